"""Depth messages to numpy and back: depth images, CameraInfo, the instance point cloud.

Depth follows REP 118: ``16UC1`` in millimetres (0 = no measurement) or ``32FC1`` in metres
(NaN, inf or <= 0 = no measurement). Both become ``(H, W)`` float32 metres with NaN where
nothing was measured. Byte order comes from ``is_bigendian``; rows may be padded (``step``).
"""

from __future__ import annotations

import array

import numpy as np
from sensor_msgs.msg import CameraInfo, Image, PointCloud2, PointField
from std_msgs.msg import Header

from ranksam_ros.pipeline.depth3d import InstancePoints, Intrinsics, IntrinsicsError
from ranksam_ros.ros.image_input import BadImageError, check_image_size

# Encoding -> (numpy dtype letter and size, scale to metres).
DEPTH_ENCODINGS = {"16UC1": ("u2", 0.001), "32FC1": ("f4", 1.0)}
# PointCloud2 layout of ~/points: (name, offset, datatype); 20 bytes per point.
POINT_FIELDS = (
    ("x", 0, PointField.FLOAT32),
    ("y", 4, PointField.FLOAT32),
    ("z", 8, PointField.FLOAT32),
    ("instance_id", 12, PointField.UINT16),
    ("class_id", 14, PointField.INT16),
    ("track_id", 16, PointField.UINT32),
)
POINT_STEP = 20


def depth_to_metres(msg: Image) -> np.ndarray:
    """A depth ``sensor_msgs/Image`` -> ``(H, W)`` float32 metres, NaN = no depth.

    Raises:
        BadImageError: Another encoding, zero or oversized dimensions, ``step`` too small, or
            too little data.
    """
    encoding = msg.encoding
    if encoding not in DEPTH_ENCODINGS:
        raise BadImageError(
            f"unsupported depth encoding {encoding!r}; expected 16UC1 (mm) or 32FC1 (m)"
        )
    kind, scale = DEPTH_ENCODINGS[encoding]
    height, width, step = int(msg.height), int(msg.width), int(msg.step)
    check_image_size(width, height)
    size = int(kind[1])
    if step < width * size:
        raise BadImageError(f"depth step {step} < width*{size} = {width * size}")
    needed = step * height
    if len(msg.data) < needed:
        raise BadImageError(
            f"depth data truncated: {len(msg.data)} bytes < step*height = {step}*{height}"
        )
    order = ">" if msg.is_bigendian else "<"
    rows = np.frombuffer(msg.data, np.uint8, count=needed).reshape(height, step)
    values = rows[:, : width * size].copy().view(f"{order}{kind}").reshape(height, width)
    metres = values.astype(np.float32) * np.float32(scale)
    if kind == "u2":
        metres[values == 0] = np.nan  # 0 mm is "no measurement", not a point on the lens
    return metres


def intrinsics_from_camera_info(msg: CameraInfo) -> Intrinsics:
    """Pinhole intrinsics from ``CameraInfo.k`` (and its image size).

    Distortion is not applied: aligned depth from RGB-D drivers is rectified, or its lens close
    enough to pinhole for a per-instance median.

    Raises:
        IntrinsicsError: Zero or non-finite focal length, non-finite principal point, or
            binning (``binning_x/y`` > 1 would need the intrinsics scaled).
    """
    if max(msg.binning_x, msg.binning_y) > 1:
        raise IntrinsicsError(
            f"binned camera_info (binning {msg.binning_x}x{msg.binning_y}) is not supported"
        )
    return Intrinsics.from_k(list(msg.k), int(msg.width), int(msg.height))


def depth_image(depth_m: np.ndarray, header: Header, encoding: str = "32FC1") -> Image:
    """``(H, W)`` metres -> a depth ``Image`` (``16UC1`` rounds to mm, NaN -> 0)."""
    if encoding not in DEPTH_ENCODINGS:
        raise ValueError(f"encoding must be one of {', '.join(DEPTH_ENCODINGS)}")
    kind, scale = DEPTH_ENCODINGS[encoding]
    values = depth_m / scale
    if kind == "u2":
        values = np.clip(np.nan_to_num(values, nan=0.0, posinf=0.0, neginf=0.0), 0, 65535)
        values = np.rint(values)
    pixels = np.ascontiguousarray(values.astype(f"<{kind}"))
    height, width = depth_m.shape
    msg = Image(header=header, height=height, width=width, encoding=encoding, is_bigendian=0)
    msg.step = width * pixels.itemsize
    msg.data = _bytes(pixels)
    return msg


def camera_info(k: Intrinsics, header: Header) -> CameraInfo:
    """A plumb-bob ``CameraInfo`` without distortion for intrinsics ``k``."""
    msg = CameraInfo(header=header, width=k.width, height=k.height)
    msg.distortion_model = "plumb_bob"
    msg.d = [0.0] * 5
    msg.k = np.array([k.fx, 0.0, k.cx, 0.0, k.fy, k.cy, 0.0, 0.0, 1.0])
    msg.r = np.eye(3).reshape(-1)
    msg.p = np.array([k.fx, 0.0, k.cx, 0.0, 0.0, k.fy, k.cy, 0.0, 0.0, 0.0, 1.0, 0.0])
    return msg


def point_cloud(points: InstancePoints, header: Header) -> PointCloud2:
    """Instance points -> an unorganised ``PointCloud2`` (see :data:`POINT_FIELDS`)."""
    dtype = np.dtype(
        {
            "names": ["x", "y", "z", "instance_id", "class_id", "track_id"],
            "formats": ["<f4", "<f4", "<f4", "<u2", "<i2", "<u4"],
            "offsets": [offset for _, offset, _ in POINT_FIELDS],
            "itemsize": POINT_STEP,
        }
    )
    packed = np.zeros(len(points), dtype)
    for axis, name in enumerate("xyz"):
        packed[name] = points.xyz[:, axis]
    packed["instance_id"] = points.instance_id
    packed["class_id"] = points.class_id
    packed["track_id"] = points.track_id
    msg = PointCloud2(header=header, height=1, width=len(points), is_bigendian=False)
    msg.fields = [
        PointField(name=name, offset=offset, datatype=datatype, count=1)
        for name, offset, datatype in POINT_FIELDS
    ]
    msg.point_step, msg.row_step = POINT_STEP, POINT_STEP * len(points)
    msg.is_dense = True  # only valid depth becomes a point
    msg.data = _bytes(packed)
    return msg


def read_point_cloud(msg: PointCloud2) -> np.ndarray:
    """The structured array of a cloud made by :func:`point_cloud` (for consumers and tests)."""
    names = [f.name for f in msg.fields]
    formats = {PointField.FLOAT32: "<f4", PointField.UINT16: "<u2", PointField.INT16: "<i2"}
    formats[PointField.UINT32] = "<u4"
    dtype = np.dtype(
        {
            "names": names,
            "formats": [formats[f.datatype] for f in msg.fields],
            "offsets": [f.offset for f in msg.fields],
            "itemsize": msg.point_step,
        }
    )
    return np.frombuffer(bytes(msg.data), dtype, count=msg.width * msg.height)


def _bytes(values: np.ndarray) -> array.array:
    out = array.array("B")
    out.frombytes(np.ascontiguousarray(values).reshape(-1).view(np.uint8).data)
    return out
