"""Camera bags read back: topics, frames as serialised CDR, depth companions, digests.

Bags are read with ``rosbags`` (pure Python, Jazzy typestore), so this works without a ROS
install. Its CDR is byte-identical to rclpy's: frames loaded here are published unchanged by
the replay benchmark; :mod:`ranksam_ros.bench.bag_writer` writes them. A bag is a rosbag2
directory, or a single ``.mcap`` / ``.db3`` file when the path ends that way (Foxglove and
``ros2 bag play`` open both).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ranksam_ros.bench import depth_bag
from ranksam_ros.bench.cdr import CdrError, stamp_key
from ranksam_ros.bench.depth_bag import Companion

IMAGE = "sensor_msgs/msg/Image"
COMPRESSED = "sensor_msgs/msg/CompressedImage"
SUPPORTED_TYPES = (IMAGE, COMPRESSED)
DEFAULT_TOPIC = "/camera/image_raw"
DEFAULT_LABEL_TOPIC = "/camera/labels"
STORAGE_SUFFIXES = {".mcap": "mcap", ".db3": "sqlite3"}
BAG_VERSION = 9  # rosbag2 metadata version of Jazzy


class BagError(ValueError):
    """A bag that cannot be used: missing, unreadable, or without a usable camera topic."""


@dataclass
class BagFrames:
    """The frames of one topic as serialised CDR, in bag order.

    Attributes:
        path: The bag.
        topic: Topic the frames came from.
        msgtype: Their message type.
        raw: Serialised messages, unchanged.
        log_ns: Bag (receive) timestamps.
        stamp_ns: Header stamps read from the CDR bytes (0 = no stamp).
        topic_count: Messages of the topic in the bag (more than ``raw`` when limited).
    """

    path: Path
    topic: str
    msgtype: str
    raw: list[bytes] = field(default_factory=list)
    log_ns: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    stamp_ns: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    topic_count: int = 0

    def __len__(self) -> int:
        return len(self.raw)

    def stamp_report(self) -> dict:
        """How usable the bag's own header stamps are (replay rewrites them anyway)."""
        zero = int(np.count_nonzero(self.stamp_ns == 0))
        unique = len(np.unique(self.stamp_ns)) == len(self.stamp_ns)
        state = "missing" if zero == len(self) else ("partial" if zero else "present")
        return {"header_stamps": state, "zero_stamps": zero, "unique": bool(unique)}


# Reading ---------------------------------------------------------------------------------------
@contextmanager
def open_bag(path: str | Path) -> Iterator:
    """An open ``rosbags`` reader; missing or unreadable bags raise clear errors.

    Raises:
        FileNotFoundError: Nothing at ``path``.
        BagError: Not a rosbag2 directory / ``.mcap`` / ``.db3`` file, or corrupt.
    """
    from rosbags.rosbag2 import Reader

    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"bag not found: {path}")
    try:
        reader = Reader(path)
        reader.open()
    except Exception as exc:  # rosbags raises several types for corrupt files
        raise BagError(
            f"{path} is not a readable rosbag2 bag (a bag directory with metadata.yaml, or an "
            f".mcap or .db3 file): {type(exc).__name__}: {exc}"
        ) from exc
    try:
        yield reader
    finally:
        reader.close()


def topic_table(reader) -> dict[str, tuple[str, int]]:
    """Topic -> (message type, message count) of an open reader."""
    return {name: (info.msgtype or "?", info.msgcount) for name, info in reader.topics.items()}


def describe_topics(table: dict[str, tuple[str, int]]) -> str:
    """``/a (sensor_msgs/msg/Image, 10 msgs), ...`` for error messages."""
    if not table:
        return "the bag has no topics"
    return ", ".join(f"{t} ({kind}, {n} msgs)" for t, (kind, n) in sorted(table.items()))


def pick_camera_topic(table: dict[str, tuple[str, int]], topic: str | None) -> str:
    """The camera topic: ``topic`` if given and usable, else the only image topic.

    Raises:
        BagError: Unknown topic, unsupported type, or no / several candidates (the message
            lists the available topics and types).
    """
    if topic is not None:
        if topic not in table:
            raise BagError(
                f"topic {topic!r} is not in the bag; available: {describe_topics(table)}"
            )
        if table[topic][0] not in SUPPORTED_TYPES:
            raise BagError(
                f"topic {topic} has type {table[topic][0]}, which the benchmark cannot replay; "
                f"supported: {', '.join(SUPPORTED_TYPES)}"
            )
        return topic
    images = [
        t
        for t, (kind, _) in table.items()
        if kind in SUPPORTED_TYPES and "label" not in t and "depth" not in t
    ]
    if len(images) != 1:
        what = "no image topic" if not images else f"several image topics ({', '.join(images)})"
        raise BagError(f"{what}; pass --topic. Available: {describe_topics(table)}")
    return images[0]


def pick_label_topic(table: dict[str, tuple[str, int]], topic: str | None) -> str | None:
    """The label topic: ``topic`` if given, else an ``Image`` topic named ``*label*`` or None."""
    if topic is not None:
        if topic not in table or table[topic][0] != IMAGE:
            raise BagError(f"label topic {topic!r} is not an Image topic of the bag")
        return topic
    found = [t for t, (kind, _) in table.items() if kind == IMAGE and "label" in t]
    return found[0] if len(found) == 1 else None


def read_topic(path: str | Path, topic: str, max_frames: int = 0) -> BagFrames:
    """The messages of ``topic`` as raw CDR with bag times and header stamps.

    Args:
        path: The bag.
        topic: A topic of a header-first type.
        max_frames: Keep only the first N (0 = all).
    """
    path = Path(path)
    with open_bag(path) as reader:
        table = topic_table(reader)
        if topic not in table:
            raise BagError(
                f"topic {topic!r} is not in the bag; available: {describe_topics(table)}"
            )
        frames = BagFrames(path, topic, table[topic][0], topic_count=table[topic][1])
        connections = [c for c in reader.connections if c.topic == topic]
        log, stamps = [], []
        try:
            for _, timestamp, data in reader.messages(connections=connections):
                if max_frames and len(frames.raw) >= max_frames:
                    break
                raw = bytes(data)
                stamps.append(stamp_key(raw))
                frames.raw.append(raw)
                log.append(timestamp)
        except CdrError as exc:
            raise BagError(f"{topic}: {exc}") from exc
        except Exception as exc:
            raise BagError(f"{path}: corrupt data on {topic}: {type(exc).__name__}: {exc}") from exc
    if not frames.raw:
        raise BagError(f"topic {topic} of {path} has no messages")
    frames.log_ns = np.asarray(log, np.int64)
    frames.stamp_ns = np.asarray(stamps, np.int64)
    return frames


def load_frames(path: str | Path, topic: str | None = None, max_frames: int = 0) -> BagFrames:
    """Frames of the camera topic (given, or the only image topic) as raw CDR."""
    with open_bag(path) as reader:
        table = topic_table(reader)
    return read_topic(path, pick_camera_topic(table, topic), max_frames)


def bag_files(path: str | Path) -> list[Path]:
    """The storage files of a bag (the file itself, or a directory's data files)."""
    path = Path(path)
    if path.is_file():
        return [path]
    return sorted(p for p in path.iterdir() if p.suffix in STORAGE_SUFFIXES)


def bag_digest(path: str | Path) -> tuple[str, int]:
    """SHA-256 over the bag's storage files (sorted by name) and their total size in bytes."""
    digest, size = hashlib.sha256(), 0
    for file in bag_files(path):
        size += file.stat().st_size
        with file.open("rb") as handle:
            for chunk in iter(lambda h=handle: h.read(1 << 20), b""):
                digest.update(chunk)
    return digest.hexdigest(), size


def load_companions(path: str | Path, frames: BagFrames) -> list[Companion]:
    """Depth and CameraInfo messages of the bag paired with ``frames`` by header stamp.

    Empty when the bag has none (see :func:`ranksam_ros.bench.depth_bag.pick_depth_topics`).
    """
    with open_bag(path) as reader:
        found = depth_bag.pick_depth_topics(topic_table(reader))
    companions = []
    for topic, msgtype in found.items():
        raw = read_topic(path, topic).raw
        node_topic = depth_bag.NODE_TOPICS[msgtype]
        companions.append(depth_bag.align(frames.stamp_ns, raw, node_topic, msgtype))
    return companions
