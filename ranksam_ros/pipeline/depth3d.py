"""3D per instance from an aligned depth image and pinhole intrinsics (numpy only).

A pixel ``(u, v)`` with depth ``z`` (metres along the optical axis) back-projects to
``x = (u - cx) z / fx``, ``y = (v - cy) z / fy`` in the camera's optical frame (x right,
y down, z forward; REP 103). The depth image must be registered to the colour frame (same
size and intrinsics), as RealSense's ``aligned_depth_to_color`` or ZED's depth are.

Mask edges are where depth lies: a mask one pixel too wide takes the background's depth, and
depth cameras smear values across object borders ("flying pixels"). So:

- **position** is the per-axis median of the points under the mask eroded by ``erode_px``
  (the whole mask when erosion leaves nothing, e.g. a pole two pixels wide);
- **extent** comes from the whole mask's points, less those whose depth strays from the
  eroded core's (more than three robust standard deviations, at least 10% of its median
  depth): the ``extent_low``-``extent_high`` percentile range per axis, divided by
  ``(extent_high - extent_low) / 100`` -- for an evenly covered surface that is its full
  size, while the stray few percent at either end are ignored;
- **depth_valid_ratio** is the share of the core's pixels with valid depth (finite, within
  ``min_depth_m``..``max_depth_m``); below ``min_valid_pixels`` valid pixels position and
  extent are NaN.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from ranksam_ros.node_config import DepthConfig
from ranksam_ros.pipeline.result import NAN3, Segmentation

_MAD_TO_SIGMA = 1.4826  # median absolute deviation -> standard deviation of a normal
_CORE_BAND_SIGMAS = 3.0
_CORE_BAND_MIN = 0.1  # of the core's median depth: a flat face has no spread at all


class IntrinsicsError(ValueError):
    """Camera intrinsics that cannot back-project (zero or non-finite focal length, ...)."""


@dataclass(frozen=True)
class Intrinsics:
    """Pinhole intrinsics of the (depth-aligned) colour camera.

    Attributes:
        fx: Focal length in pixels along x.
        fy: Focal length in pixels along y.
        cx: Principal point column.
        cy: Principal point row.
        width: Image width the intrinsics belong to (0 = unknown).
        height: Image height (0 = unknown).
    """

    fx: float
    fy: float
    cx: float
    cy: float
    width: int = 0
    height: int = 0

    @classmethod
    def from_k(cls, k, width: int = 0, height: int = 0) -> Intrinsics:
        """From a row-major 3x3 camera matrix ``K`` (9 values, CameraInfo's ``k``).

        Raises:
            IntrinsicsError: Not 9 values, a focal length that is not finite and positive,
                or a non-finite principal point.
        """
        values = np.asarray(k, np.float64).reshape(-1)
        if values.size != 9:
            raise IntrinsicsError(f"K needs 9 values, got {values.size}")
        fx, cx, fy, cy = values[0], values[2], values[4], values[5]
        if not (math.isfinite(fx) and math.isfinite(fy) and fx > 0 and fy > 0):
            raise IntrinsicsError(f"focal lengths must be finite and > 0, got fx={fx} fy={fy}")
        if not (math.isfinite(cx) and math.isfinite(cy)):
            raise IntrinsicsError(f"principal point must be finite, got cx={cx} cy={cy}")
        return cls(float(fx), float(fy), float(cx), float(cy), int(width), int(height))

    def check_size(self, height: int, width: int) -> None:
        """Raise :class:`IntrinsicsError` unless the intrinsics belong to this image size."""
        if self.width and self.height and (self.width, self.height) != (width, height):
            raise IntrinsicsError(
                f"camera_info is for {self.width}x{self.height} images, the frame is "
                f"{width}x{height}"
            )

    def back_project(self, us: np.ndarray, vs: np.ndarray, zs: np.ndarray) -> np.ndarray:
        """Points ``(N, 3)`` float64 of pixels ``us``, ``vs`` ``(N,)`` at depths ``zs`` (m)."""
        return np.stack([(us - self.cx) * zs / self.fx, (vs - self.cy) * zs / self.fy, zs], axis=1)


@dataclass(frozen=True)
class Geometry3D:
    """3D of one instance.

    Attributes:
        position: ``(x, y, z)`` metres (NaN when not measured).
        extent: ``(x, y, z)`` metres (NaN when not measured).
        valid_ratio: Share of the core's pixels with valid depth.
        valid_pixels: How many.
    """

    position: tuple[float, float, float] = NAN3
    extent: tuple[float, float, float] = NAN3
    valid_ratio: float = 0.0
    valid_pixels: int = 0


def valid_depth(depth_m: np.ndarray, cfg: DepthConfig) -> np.ndarray:
    """``(H, W)`` bool: finite depth within ``min_depth_m``..``max_depth_m``."""
    with np.errstate(invalid="ignore"):
        return np.isfinite(depth_m) & (depth_m >= cfg.min_depth_m) & (depth_m <= cfg.max_depth_m)


def eroded_core(mask: np.ndarray, erode_px: int) -> np.ndarray:
    """``mask`` ``(h, w)`` bool eroded by ``erode_px`` (the mask itself if nothing is left).

    Pixels outside the array count as outside the mask, so masks touching the frame border
    shrink there too.
    """
    if erode_px <= 0 or not mask.any():
        return mask
    core = ndimage.binary_erosion(mask, iterations=erode_px, border_value=0)
    return core if core.any() else mask


def _bbox(mask: np.ndarray) -> tuple[slice, slice] | None:
    rows, cols = np.flatnonzero(mask.any(axis=1)), np.flatnonzero(mask.any(axis=0))
    if not len(rows):
        return None
    return slice(rows[0], rows[-1] + 1), slice(cols[0], cols[-1] + 1)


def _points(
    region: np.ndarray, valid: np.ndarray, depth_m: np.ndarray, k: Intrinsics, origin
) -> np.ndarray:
    """Points ``(N, 3)`` of ``region & valid`` pixels of a crop whose corner is ``origin``."""
    vs, us = np.nonzero(region & valid)
    zs = depth_m[vs, us].astype(np.float64)
    return k.back_project(us + origin[1], vs + origin[0], zs)


def measure_instance(
    mask: np.ndarray, depth_m: np.ndarray, valid: np.ndarray, k: Intrinsics, cfg: DepthConfig
) -> Geometry3D:
    """Position, extent and valid-depth share of one mask.

    Args:
        mask: ``(H, W)`` bool.
        depth_m: ``(H, W)`` float32 depth in metres (aligned to the mask).
        valid: ``(H, W)`` bool, :func:`valid_depth` of ``depth_m``.
        k: Intrinsics of the frame.
        cfg: Erosion, thresholds and percentiles.
    """
    window = _bbox(mask)
    if window is None:
        return Geometry3D()
    rows, cols = window
    crop, depth, ok = mask[window], depth_m[window], valid[window]
    core = eroded_core(crop, cfg.erode_px)  # the box is tight: beyond it is outside the mask
    origin = (rows.start, cols.start)
    core_points = _points(core, ok, depth, k, origin)
    ratio = len(core_points) / max(int(np.count_nonzero(core)), 1)
    if len(core_points) < cfg.min_valid_pixels:
        return Geometry3D(valid_ratio=ratio, valid_pixels=len(core_points))
    position = np.median(core_points, axis=0)
    points = _points(crop, ok, depth, k, origin)
    z_mad = float(np.median(np.abs(core_points[:, 2] - position[2])))
    band = max(_CORE_BAND_SIGMAS * _MAD_TO_SIGMA * z_mad, _CORE_BAND_MIN * position[2])
    points = points[np.abs(points[:, 2] - position[2]) <= band]
    low, high = np.percentile(points, [cfg.extent_low, cfg.extent_high], axis=0)
    extent = (high - low) / ((cfg.extent_high - cfg.extent_low) / 100.0)
    return Geometry3D(
        position=tuple(float(v) for v in position),
        extent=tuple(float(v) for v in extent),
        valid_ratio=ratio,
        valid_pixels=len(core_points),
    )


def add_3d(result: Segmentation, depth_m: np.ndarray, k: Intrinsics, cfg: DepthConfig) -> None:
    """Measure every instance of ``result`` (its ``position``, ``extent``, ``depth_valid_ratio``).

    Args:
        result: The frame's instances, masks ``(H, W)`` bool.
        depth_m: ``(H, W)`` float32 metres, aligned to the frame (NaN or 0 = no depth).
        k: Intrinsics of the frame.
        cfg: Depth settings.

    Raises:
        ValueError: ``depth_m`` is not the frame's size.
    """
    if depth_m.shape != tuple(result.source_hw):
        height, width = result.source_hw
        raise ValueError(
            f"depth image {depth_m.shape[1]}x{depth_m.shape[0]} is not the colour frame's "
            f"{width}x{height} (it must be aligned to the colour camera)"
        )
    k.check_size(*result.source_hw)
    valid = valid_depth(depth_m, cfg)
    for inst in result.instances:
        geometry = measure_instance(inst.mask, depth_m, valid, k, cfg)
        inst.position, inst.extent = geometry.position, geometry.extent
        inst.depth_valid_ratio = geometry.valid_ratio


@dataclass
class InstancePoints:
    """Points of every instance, decimated.

    Attributes:
        xyz: ``(N, 3)`` float32 metres.
        instance_id: ``(N,)`` uint16.
        class_id: ``(N,)`` int16.
        track_id: ``(N,)`` uint32.
    """

    xyz: np.ndarray
    instance_id: np.ndarray
    class_id: np.ndarray
    track_id: np.ndarray

    def __len__(self) -> int:
        return len(self.xyz)


def instance_points(
    result: Segmentation, depth_m: np.ndarray, k: Intrinsics, cfg: DepthConfig
) -> InstancePoints:
    """Valid-depth points of the instance label map, every ``points_stride``-th pixel per axis.

    Pixels take the instance that owns them in ``result.instance_ids`` (overlaps resolved by
    score, as in the label image).
    """
    stride = cfg.points_stride
    ids = result.instance_ids[::stride, ::stride]
    depth = depth_m[::stride, ::stride]
    keep = (ids > 0) & valid_depth(depth, cfg)
    vs, us = np.nonzero(keep)
    points = k.back_project(us * stride, vs * stride, depth[vs, us].astype(np.float64))
    owner = ids[vs, us].astype(np.int64)
    lookup_class = np.zeros(int(ids.max(initial=0)) + 1, np.int16)
    lookup_track = np.zeros_like(lookup_class, dtype=np.uint32)
    for inst in result.instances:
        if inst.instance_id < len(lookup_class):
            lookup_class[inst.instance_id] = inst.class_id
            lookup_track[inst.instance_id] = inst.track_id
    return InstancePoints(
        points.astype(np.float32),
        owner.astype(np.uint16),
        lookup_class[owner],
        lookup_track[owner],
    )
