"""Track ids and 3D for one frame's result, in the node's worker after segmentation.

Both run outside the model lock (they need no model) on the camera that produced the frame:
its tracker gives track ids, its depth input the depth image paired by stamp. Failures are
counted on the camera and the frame is published without what failed.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from ranksam_ros.node_config import DepthConfig, TrackingConfig
from ranksam_ros.pipeline.depth3d import InstancePoints, IntrinsicsError, add_3d, instance_points
from ranksam_ros.pipeline.result import Segmentation
from ranksam_ros.ros.camera import CameraIO


@dataclass
class SpatialOutcome:
    """What tracking and depth added to a frame.

    Attributes:
        depth_stamp_ns: Stamp of the paired depth image (0 = none).
        points: The instance point cloud, when asked for and depth was paired.
        timings_ms: ``tracking`` and ``depth`` milliseconds.
    """

    depth_stamp_ns: int = 0
    points: InstancePoints | None = None
    timings_ms: dict[str, float] = field(default_factory=dict)


def track(camera: CameraIO, cfg: TrackingConfig, result: Segmentation, stamp_ns: int) -> None:
    """Write track ids into ``result`` with the camera's tracker (or reset it when disabled).

    The settings are swapped in every frame, so parameter changes apply from the next one.
    """
    tracker = camera.tracker
    if not cfg.enabled:
        tracker.reset()  # ids start afresh when tracking is switched back on
        return
    tracker.cfg = cfg
    stats = tracker.update(result, stamp_ns / 1e9)
    camera.counters.tracks_live = stats.live
    camera.counters.tracker_resets += int(stats.reset)


def add_depth(
    camera: CameraIO, cfg: DepthConfig, result: Segmentation, stamp_ns: int, want_points: bool
) -> tuple[int, InstancePoints | None]:
    """3D for every instance from the depth image paired with the frame.

    Returns:
        The paired depth image's stamp (0 when there was none or it was refused) and the
        point cloud (None unless ``want_points`` and depth was paired).
    """
    depth = camera.depth
    if depth is None:
        return 0, None
    found = depth.match(stamp_ns, cfg)
    if isinstance(found, str):
        _without(camera, found)
        return 0, None
    frame, intrinsics = found
    try:
        add_3d(result, frame.metres, intrinsics, cfg)
    except ValueError as exc:  # not aligned to the frame: wrong size, or K of another size
        depth.refuse(exc, depth=not isinstance(exc, IntrinsicsError))
        _without(camera, str(exc))
        return 0, None
    depth.counters.with_depth += 1
    points = instance_points(result, frame.metres, intrinsics, cfg) if want_points else None
    return frame.stamp_ns, points


def _without(camera: CameraIO, reason: str) -> None:
    counters = camera.depth.counters
    counters.without_depth += 1
    counters.last_error = reason
    camera.node.get_logger().warn(
        f"{camera.input_topic}: frame published without 3D: {reason}", throttle_duration_sec=5.0
    )


def apply(
    camera: CameraIO,
    tracking: TrackingConfig,
    depth: DepthConfig,
    result: Segmentation,
    stamp_ns: int,
) -> SpatialOutcome:
    """Tracking, then 3D (points only while someone subscribes), each timed."""
    outcome = SpatialOutcome()
    start = time.perf_counter()
    track(camera, tracking, result, stamp_ns)
    tracked = time.perf_counter()
    outcome.depth_stamp_ns, outcome.points = add_depth(
        camera, depth, result, stamp_ns, camera.points_wanted()
    )
    outcome.timings_ms = {
        "tracking": (tracked - start) * 1000.0,
        "depth": (time.perf_counter() - tracked) * 1000.0,
    }
    return outcome
