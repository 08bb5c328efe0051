"""The ``rosbags`` typestore used for bags: Jazzy's types plus ``ranksam_msgs`` from .msg files.

Registering our messages from their real definitions makes the MCAP schemas carry them, so
Foxglove and ``ros2 bag`` decode recorded ``SegmentationMasks`` without our package.
"""

from __future__ import annotations

import os
import sys
from functools import lru_cache
from pathlib import Path

PACKAGE = "ranksam_msgs"
REPO_MSG_DIR = Path(__file__).resolve().parents[2] / "msg" / "msg"


def message_dirs() -> list[Path]:
    """Candidate folders of ``ranksam_msgs`` .msg files, installed ones first."""
    prefixes = [sys.prefix, *os.environ.get("AMENT_PREFIX_PATH", "").split(os.pathsep)]
    dirs = [Path(p) / "share" / PACKAGE / "msg" for p in prefixes if p]
    return [*dirs, REPO_MSG_DIR]


def find_message_dir() -> Path:
    """The first folder that holds ``SegmentationMasks.msg``.

    Raises:
        FileNotFoundError: No candidate has it (the message lists where it looked).
    """
    for folder in message_dirs():
        if (folder / "SegmentationMasks.msg").is_file():
            return folder
    looked = ", ".join(str(d) for d in message_dirs())
    raise FileNotFoundError(f"{PACKAGE} .msg files not found (looked in {looked})")


@lru_cache(maxsize=1)
def ranksam_typestore():
    """Jazzy typestore with every ``ranksam_msgs/msg/*`` type registered (cached)."""
    from rosbags.typesys import Stores, get_types_from_msg, get_typestore

    store = get_typestore(Stores.ROS2_JAZZY)
    types: dict = {}
    for path in sorted(find_message_dir().glob("*.msg")):
        types.update(get_types_from_msg(path.read_text(), f"{PACKAGE}/msg/{path.stem}"))
    store.register(types)
    return store
