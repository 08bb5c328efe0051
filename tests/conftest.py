"""Shared fixtures: bundled frames, tiny models, isolated ROS domains."""

from __future__ import annotations

import copy
import os
import random
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
FRAMES = ROOT / "ranksam_ros" / "assets" / "camvid_val"

os.environ.setdefault("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")
os.environ.setdefault("ROS_LOCALHOST_ONLY", "1")
os.environ.setdefault("ROS_DOMAIN_ID", str(random.Random(os.getpid()).randint(100, 200)))


@pytest.fixture(autouse=True)
def _seed() -> None:
    torch.manual_seed(0)
    np.random.seed(0)
    torch.set_num_threads(2)


@pytest.fixture
def frames_dir() -> Path:
    """Folder with the bundled CamVid frames (images/ + labels/)."""
    return FRAMES


@pytest.fixture
def dataset_root(tmp_path: Path) -> Path:
    """A dataset root whose train/ and val/ are the bundled frames."""
    for split in ("train", "val"):
        (tmp_path / split).symlink_to(FRAMES, target_is_directory=True)
    return tmp_path


@pytest.fixture(scope="session")
def make_micro_model() -> Callable[[], torch.nn.Module]:
    """Returns a function giving a fresh deep copy of one micro model (random weights, seed 0).

    Built once per session; every call copies it, so a test that injects adapters or changes
    weights leaves the next test an untouched model.
    """
    from ranksam_ros.modeling.registry import build_model

    with torch.random.fork_rng():  # the same weights whichever test asks first
        torch.manual_seed(0)
        template = build_model("micro")
    return lambda: copy.deepcopy(template)


@pytest.fixture
def micro_model(make_micro_model) -> torch.nn.Module:
    """A fresh micro model (random weights, seed 0) of this test's own."""
    return make_micro_model()
