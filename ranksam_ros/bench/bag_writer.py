"""Image folders written as rosbag2 camera bags (``ranksam make-bag``).

Written with ``rosbags`` (pure Python, Jazzy typestore), so no ROS install is needed; its CDR
is byte-identical to rclpy's. A bag is a rosbag2 directory, or a single ``.mcap`` / ``.db3``
file when the path ends that way (Foxglove and ``ros2 bag play`` open both). Reading bags
back is :mod:`ranksam_ros.bench.bags`.
"""

from __future__ import annotations

import io
import shutil
from contextlib import contextmanager
from pathlib import Path

import numpy as np
from PIL import Image as PILImage

from ranksam_ros.bench import depth_bag
from ranksam_ros.bench.bags import (
    BAG_VERSION,
    COMPRESSED,
    DEFAULT_LABEL_TOPIC,
    DEFAULT_TOPIC,
    IMAGE,
    STORAGE_SUFFIXES,
    BagError,
)
from ranksam_ros.bench.typestore import ranksam_typestore
from ranksam_ros.data.folder import IMAGE_SUFFIXES, read_label, read_rgb


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
            msg = msg or depth_bag.image_message(store, header, rgb, "rgb8")
            if depth_conn is not None:  # before the frame, as a driver publishes them
                for kind, item in depth_bag.frame_messages(
                    store, header, rgb.shape[:2], depth_paths[index], camera_info, fov_deg
                ):
                    target = depth_conn if kind == IMAGE else info_conn
                    writer.write(target, stamp, store.serialize_cdr(item, kind))
            writer.write(camera, stamp, store.serialize_cdr(msg, msgtype))
            if label_conn is not None:
                label = depth_bag.image_message(
                    store, header, read_label(label_paths[index]), "mono8"
                )
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
