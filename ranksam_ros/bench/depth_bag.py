"""Depth in camera bags: ``ranksam make-bag --depth DIR`` writes it, the replay plays it along.

Depth files sit beside the images under the same stems: 16-bit PNGs in millimetres (written as
``16UC1``, 0 = no depth) or ``.npy`` arrays (float in metres -> ``32FC1``, uint16 in mm ->
``16UC1``), each the size of its colour image (aligned to it). Every depth image gets a
``CameraInfo`` with the same stamp: from a ROS calibration YAML (``--camera-info``: the
``image_width``, ``image_height`` and ``camera_matrix`` that ``camera_calibration`` writes), or
else a centred pinhole with a horizontal field of view of ``--fov`` degrees.

On replay the depth and camera_info messages of a frame go out just before it, with the same
rewritten stamp, on the node's default ``/depth`` and ``/camera_info`` topics.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image as PILImage

from ranksam_ros.bench.cdr import CdrError, stamp_key
from ranksam_ros.config_loader import load_yaml

DEPTH_IMAGE = "sensor_msgs/msg/Image"
CAMERA_INFO = "sensor_msgs/msg/CameraInfo"
DEFAULT_DEPTH_TOPIC = "/camera/depth"
DEFAULT_INFO_TOPIC = "/camera/camera_info"
NODE_TOPICS = {DEPTH_IMAGE: "/depth", CAMERA_INFO: "/camera_info"}  # what the node listens to
DEPTH_SUFFIXES = (".png", ".npy")


class DepthBagError(ValueError):
    """Depth input for a bag that cannot be used (the message says why)."""


def depth_files(images: list[Path], folder: Path) -> list[Path]:
    """The depth file of every image (same stem, ``.png`` or ``.npy``).

    Raises:
        FileNotFoundError: ``folder`` is missing.
        DepthBagError: Images without a depth file.
    """
    if not folder.is_dir():
        raise FileNotFoundError(f"depth folder not found: {folder}")
    found, missing = [], []
    for image in images:
        candidates = [folder / f"{image.stem}{suffix}" for suffix in DEPTH_SUFFIXES]
        hit = next((c for c in candidates if c.is_file()), None)
        (found if hit else missing).append(hit or image.name)
    if missing:
        names = ", ".join(str(name) for name in missing[:5])
        raise DepthBagError(f"{len(missing)} images have no depth (.png/.npy) in {folder}: {names}")
    return found


def read_depth(path: Path) -> tuple[np.ndarray, str]:
    """A depth file as ``(pixels, encoding)``: uint16 mm -> ``16UC1``, float m -> ``32FC1``.

    Raises:
        DepthBagError: Not 2D, or neither 16-bit integers nor floats.
    """
    if path.suffix == ".npy":
        values = np.load(path, allow_pickle=False)
    else:
        with PILImage.open(path) as image:
            values = np.asarray(image)
    if values.ndim != 2:
        raise DepthBagError(f"{path.name}: depth must be one channel, got shape {values.shape}")
    if values.dtype == np.uint16 or (path.suffix == ".png" and values.dtype == np.int32):
        return values.astype(np.uint16), "16UC1"  # PIL opens 16-bit PNGs as I;16 or I
    if np.issubdtype(values.dtype, np.floating):
        return values.astype(np.float32), "32FC1"
    raise DepthBagError(
        f"{path.name}: depth must be 16-bit millimetres or float metres, got {values.dtype}"
    )


def pinhole_k(width: int, height: int, fov_deg: float) -> tuple[float, ...]:
    """Row-major K of a centred pinhole with horizontal field of view ``fov_deg``."""
    if not 0 < fov_deg < 180:
        raise DepthBagError(f"--fov must be in (0, 180) degrees, got {fov_deg}")
    f = (width / 2.0) / math.tan(math.radians(fov_deg) / 2.0)
    return (f, 0.0, (width - 1) / 2.0, 0.0, f, (height - 1) / 2.0, 0.0, 0.0, 1.0)


def calibration_k(path: Path, width: int, height: int) -> tuple[float, ...]:
    """K from a ROS calibration YAML, checked against the image size.

    Raises:
        DepthBagError: No 9-value ``camera_matrix.data``, or a calibration for another size.
    """
    data = load_yaml(path)
    values = (data.get("camera_matrix") or {}).get("data") or []
    if len(values) != 9:
        raise DepthBagError(f"{path}: camera_matrix.data needs 9 values, got {len(values)}")
    size = (data.get("image_width", width), data.get("image_height", height))
    if size != (width, height):
        raise DepthBagError(f"{path} is for {size[0]}x{size[1]} images, these are {width}x{height}")
    return tuple(float(v) for v in values)


def image_message(store, header, pixels: np.ndarray, encoding: str):
    """A rosbags ``Image`` of ``(H, W)`` or ``(H, W, C)`` ``pixels`` (little-endian, unpadded).

    Colour, label and depth frames of a bag are all written through this one builder.
    """
    height, width = pixels.shape[:2]
    channels = 1 if pixels.ndim == 2 else pixels.shape[2]
    data = np.ascontiguousarray(pixels.astype(pixels.dtype.newbyteorder("<"))).view(np.uint8)
    return store.types[DEPTH_IMAGE](
        header=header,
        height=height,
        width=width,
        encoding=encoding,
        is_bigendian=0,
        step=width * channels * pixels.itemsize,
        data=data.reshape(-1),
    )


def camera_info_message(store, header, width: int, height: int, k: tuple[float, ...]):
    """A rosbags ``CameraInfo``: plumb bob without distortion, projection from ``k``."""
    fx, _, cx, _, fy, cy = k[:6]
    types = store.types
    roi = types["sensor_msgs/msg/RegionOfInterest"](
        x_offset=0, y_offset=0, height=0, width=0, do_rectify=False
    )
    return types[CAMERA_INFO](
        header=header,
        height=height,
        width=width,
        distortion_model="plumb_bob",
        d=np.zeros(5),
        k=np.asarray(k, np.float64),
        r=np.eye(3).reshape(-1),
        p=np.array([fx, 0.0, cx, 0.0, 0.0, fy, cy, 0.0, 0.0, 0.0, 1.0, 0.0]),
        binning_x=0,
        binning_y=0,
        roi=roi,
    )


def frame_messages(
    store, header, size: tuple[int, int], path: Path, calibration, fov_deg: float
) -> list[tuple[str, object]]:
    """``(type, message)`` of one frame's depth image and of its CameraInfo.

    Args:
        store: The rosbags typestore.
        header: The frame's header (rosbags type).
        size: ``(H, W)`` of the colour frame.
        path: The depth file.
        calibration: Calibration YAML path, or None for the pinhole of ``fov_deg``.
        fov_deg: Horizontal field of view of the default pinhole.

    Raises:
        DepthBagError: Unreadable depth, or depth of another size than the frame.
    """
    pixels, encoding = read_depth(path)
    height, width = size
    if pixels.shape != (height, width):
        raise DepthBagError(
            f"{path.name}: depth {pixels.shape[1]}x{pixels.shape[0]} is not aligned to its "
            f"{width}x{height} image"
        )
    if calibration is not None:
        k = calibration_k(Path(calibration), width, height)
    else:
        k = pinhole_k(width, height, fov_deg)
    info = camera_info_message(store, header, width, height, k)
    return [(DEPTH_IMAGE, image_message(store, header, pixels, encoding)), (CAMERA_INFO, info)]


def pick_depth_topics(table: dict[str, tuple[str, int]]) -> dict[str, str]:
    """Bag topic -> message type of the depth image and CameraInfo topics (empty: none).

    The depth topic is the only ``Image`` topic named ``*depth*``; the CameraInfo topic the
    only one of its type.
    """
    depth = [t for t, (kind, _) in table.items() if kind == DEPTH_IMAGE and "depth" in t]
    info = [t for t, (kind, _) in table.items() if kind == CAMERA_INFO]
    found = {}
    if len(depth) == 1:
        found[depth[0]] = DEPTH_IMAGE
    if len(info) == 1:
        found[info[0]] = CAMERA_INFO
    return found


@dataclass
class Companion:
    """Messages that go out with each camera frame on replay.

    Attributes:
        node_topic: Where the node listens (``/depth`` or ``/camera_info``).
        msgtype: Their type.
        raw: Per camera frame index, the serialised message with the same stamp (or None).
    """

    node_topic: str
    msgtype: str
    raw: list[bytes | None]

    def available(self) -> int:
        return sum(item is not None for item in self.raw)


def align(camera_stamps: np.ndarray, raw: list[bytes], node_topic: str, msgtype: str) -> Companion:
    """Pair messages with camera frames by equal header stamp."""
    by_stamp = {}
    for data in raw:
        try:
            by_stamp.setdefault(stamp_key(data), data)
        except CdrError:
            continue
    return Companion(node_topic, msgtype, [by_stamp.get(int(s)) for s in camera_stamps])
