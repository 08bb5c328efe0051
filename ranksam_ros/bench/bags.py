"""Camera bags: image folders written as rosbag2 (``ranksam make-bag``) and frames read back.

Bags are written and read with ``rosbags`` (pure Python, Jazzy typestore), so this works
without a ROS install. Its CDR is byte-identical to rclpy's: frames loaded here are published
unchanged by the replay benchmark. A bag is a rosbag2 directory, or a single ``.mcap`` /
``.db3`` file when the path ends that way (Foxglove and ``ros2 bag play`` open both).
"""

from __future__ import annotations

import hashlib
import io
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image as PILImage

from ranksam_ros.bench import depth_bag
from ranksam_ros.bench.cdr import CdrError, stamp_key
from ranksam_ros.bench.depth_bag import Companion
from ranksam_ros.bench.typestore import ranksam_typestore
from ranksam_ros.data.folder import IMAGE_SUFFIXES, read_label, read_rgb

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


# Writing ---------------------------------------------------------------------------------------
def storage_for(out: Path, storage: str | None) -> str:
    """The storage plugin for ``out``: from ``storage``, else its suffix, else MCAP."""
    implied = STORAGE_SUFFIXES.get(out.suffix)
    if storage is None:
        return implied or "mcap"
    if storage not in STORAGE_SUFFIXES.values():
        raise BagError(f"storage {storage!r} is not one of {', '.join(STORAGE_SUFFIXES.values())}")
    if implied is not None and implied != storage:
        raise BagError(f"{out.name} names {implied} storage but --storage is {storage}")
    return storage


@contextmanager
def bag_writer(out: str | Path, storage: str | None = None, overwrite: bool = False):
    """An open ``rosbags`` writer for ``out`` (a directory, or one ``.mcap``/``.db3`` file).

    A single-file bag is written as a rosbag2 directory beside ``out`` whose storage file is
    moved into place on success.

    Raises:
        BagError: ``out`` exists and ``overwrite`` is false, or an unknown storage.
    """
    from rosbags.rosbag2 import StoragePlugin, Writer

    out = Path(out)
    plugin = storage_for(out, storage)
    if out.exists() or out.is_symlink():
        if not overwrite:
            raise BagError(f"{out} exists already (pass --overwrite to replace it)")
        shutil.rmtree(out) if out.is_dir() else out.unlink()
    single = out.suffix in STORAGE_SUFFIXES
    target = out.parent / f".{out.name}.partial" if single else out
    if target.exists():
        shutil.rmtree(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    kind = StoragePlugin.MCAP if plugin == "mcap" else StoragePlugin.SQLITE3
    writer = Writer(target, version=BAG_VERSION, storage_plugin=kind)
    writer.open()
    try:
        yield writer
    except BaseException:
        writer.close()
        shutil.rmtree(target, ignore_errors=True)
        raise
    writer.close()
    if single:
        suffix = ".mcap" if plugin == "mcap" else ".db3"
        (target / f"{target.name}{suffix}").replace(out)
        shutil.rmtree(target)


def _image_files(folder: Path) -> list[Path]:
    if not folder.is_dir():
        raise FileNotFoundError(f"image folder not found: {folder}")
    files = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise BagError(f"{folder} holds no images ({', '.join(IMAGE_SUFFIXES)})")
    return files


def _label_files(images: list[Path], folder: Path) -> list[Path]:
    if not folder.is_dir():
        raise FileNotFoundError(f"label folder not found: {folder}")
    labels = [folder / f"{image.stem}.png" for image in images]
    missing = [p.name for p in labels if not p.is_file()]
    if missing:
        raise BagError(f"{len(missing)} images have no label in {folder}: {', '.join(missing[:5])}")
    return labels


def _header(store, stamp_ns: int, frame_id: str):
    types = store.types
    sec, nanosec = divmod(stamp_ns, 1_000_000_000)
    stamp = types["builtin_interfaces/msg/Time"](sec=sec, nanosec=nanosec)
    return types["std_msgs/msg/Header"](stamp=stamp, frame_id=frame_id)


def _image(store, pixels: np.ndarray, header, encoding: str):
    height, width = pixels.shape[:2]
    channels = 1 if pixels.ndim == 2 else pixels.shape[2]
    data = np.ascontiguousarray(pixels, np.uint8).reshape(-1)
    return store.types[IMAGE](
        header=header,
        height=height,
        width=width,
        encoding=encoding,
        is_bigendian=0,
        step=width * channels,
        data=data,
    )


def _jpeg(store, rgb: np.ndarray, header, quality: int):
    buffer = io.BytesIO()
    PILImage.fromarray(rgb).save(buffer, format="JPEG", quality=quality)
    data = np.frombuffer(buffer.getvalue(), np.uint8)
    return store.types[COMPRESSED](header=header, format="rgb8; jpeg compressed bgr8", data=data)


def make_bag(
    images: str | Path,
    out: str | Path,
    rate: float,
    labels: str | Path | None = None,
    compressed: bool = False,
    storage: str | None = None,
    topic: str | None = None,
    label_topic: str = DEFAULT_LABEL_TOPIC,
    frame_id: str = "camera",
    start_ns: int = 1_700_000_000_000_000_000,
    jpeg_quality: int = 90,
    overwrite: bool = False,
    depth: str | Path | None = None,
    depth_topic: str = depth_bag.DEFAULT_DEPTH_TOPIC,
    info_topic: str = depth_bag.DEFAULT_INFO_TOPIC,
    camera_info: str | Path | None = None,
    fov_deg: float = 60.0,
) -> dict:
    """Write the images of a folder (sorted by name) as a camera stream.

    Frame ``i`` gets header stamp and bag time ``start_ns + i / rate``. With ``labels``, the
    class-index PNG of each image (same stem) goes on ``label_topic`` as a mono8 ``Image``
    with the same stamp. With ``depth``, each image's depth file goes on ``depth_topic`` and a
    ``CameraInfo`` on ``info_topic``, same stamp (formats: ``ranksam_ros/bench/depth_bag.py``).

    Args:
        images: Folder of images (all the same size).
        out: Bag directory, or a ``.mcap`` / ``.db3`` file.
        rate: Frames per second.
        labels: Optional folder of label PNGs.
        compressed: Write ``CompressedImage`` JPEG instead of raw rgb8.
        storage: ``mcap`` or ``sqlite3`` (default: from the suffix, else MCAP).
        topic: Camera topic (default ``/camera/image_raw[/compressed]``).
        label_topic: Topic of the label images.
        frame_id: ``header.frame_id`` of every message.
        start_ns: Stamp of the first frame (fixed by default so the bag is reproducible).
        jpeg_quality: JPEG quality for ``compressed``.
        overwrite: Replace an existing ``out``.
        depth: Optional folder of depth files (aligned to the images).
        depth_topic: Topic of the depth images.
        info_topic: Topic of the CameraInfo messages.
        camera_info: Calibration YAML giving K (default: a pinhole of ``fov_deg``).
        fov_deg: Horizontal field of view of the default pinhole.

    Returns:
        Summary: path, storage, topics with types and counts, frames, rate.
    """
    if not rate > 0:
        raise BagError(f"rate must be > 0, got {rate}")
    files = _image_files(Path(images))
    label_paths = _label_files(files, Path(labels)) if labels is not None else None
    depth_paths = depth_bag.depth_files(files, Path(depth)) if depth is not None else None
    topic = topic or (f"{DEFAULT_TOPIC}/compressed" if compressed else DEFAULT_TOPIC)
    msgtype = COMPRESSED if compressed else IMAGE
    store = ranksam_typestore()
    with bag_writer(out, storage, overwrite) as writer:
        camera = writer.add_connection(topic, msgtype, typestore=store)
        label_conn = depth_conn = info_conn = None
        if label_paths is not None:
            label_conn = writer.add_connection(label_topic, IMAGE, typestore=store)
        if depth_paths is not None:
            depth_conn = writer.add_connection(depth_topic, IMAGE, typestore=store)
            info_conn = writer.add_connection(info_topic, depth_bag.CAMERA_INFO, typestore=store)
        for index, path in enumerate(files):
            stamp = start_ns + round(index * 1e9 / rate)
            header = _header(store, stamp, frame_id)
            rgb = read_rgb(path)
            msg = _jpeg(store, rgb, header, jpeg_quality) if compressed else None
            msg = msg or _image(store, rgb, header, "rgb8")
            if depth_conn is not None:  # before the frame, as a driver publishes them
                for kind, item in depth_bag.frame_messages(
                    store, header, rgb.shape[:2], depth_paths[index], camera_info, fov_deg
                ):
                    target = depth_conn if kind == IMAGE else info_conn
                    writer.write(target, stamp, store.serialize_cdr(item, kind))
            writer.write(camera, stamp, store.serialize_cdr(msg, msgtype))
            if label_conn is not None:
                label = _image(store, read_label(label_paths[index]), header, "mono8")
                writer.write(label_conn, stamp, store.serialize_cdr(label, IMAGE))
    topics = {topic: {"type": msgtype, "count": len(files)}}
    if label_paths is not None:
        topics[label_topic] = {"type": IMAGE, "count": len(files)}
    if depth_paths is not None:
        topics[depth_topic] = {"type": IMAGE, "count": len(files)}
        topics[info_topic] = {"type": depth_bag.CAMERA_INFO, "count": len(files)}
    return {
        "path": str(out),
        "storage": storage_for(Path(out), storage),
        "frames": len(files),
        "rate_hz": rate,
        "topics": topics,
    }


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
