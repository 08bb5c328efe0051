"""Frozen config dataclasses of the ROS 2 node: its inputs, outputs, tracking and depth.

The model, data, prompt and pipeline settings the node shares with training and evaluation
live in :mod:`ranksam_ros.config`; these are what only a running node (and the replay
benchmark that drives it) reads. Same rules: every default here, unknown keys refused by
:func:`ranksam_ros.config_loader.from_dict`, ranges checked in ``__post_init__``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ranksam_ros.config import (
    BackendConfig,
    PipelineConfig,
    backend_config_of,
)
from ranksam_ros.config import check as _check
from ranksam_ros.config import check_choice as _check_choice

MOTION_MODELS = ("none", "constant_velocity")  # track prediction (pipeline/tracking.py)


@dataclass(frozen=True)
class TrackingConfig:
    """Track ids across frames (``pipeline/tracking.py``); the node keeps one tracker per camera.

    A detection continues a track when their classes agree (``class_gating``) and either its
    mask overlaps the track's last mask, moved by the motion model, by ``min_iou`` or its
    centre lies within ``max_distance`` track-box diagonals of the predicted centre; among
    those pairs an optimal assignment (``scipy.optimize.linear_sum_assignment``) minimises
    ``1 - IoU + distance_weight * distance``. A track nobody continues is kept (and moved) for
    ``max_missed_frames`` frames, then retired; its id is never reused.
    """

    enabled: bool = True
    max_missed_frames: int = 5
    min_iou: float = 0.1
    # In diagonals of the track's box: at 1-2 Hz (or after dropped frames) masks of the same
    # object need not overlap at all, the predicted centre still lies close.
    max_distance: float = 0.75
    distance_weight: float = 0.5
    class_gating: bool = True
    # "constant_velocity": box centres move on at their last velocity (pixels per second of
    # header stamp); "none": a track is expected where it was last seen.
    motion: str = "constant_velocity"
    # Weight of the newest measured velocity against the previous estimate (1 = newest only).
    velocity_smoothing: float = 0.5

    def __post_init__(self) -> None:
        _check(self.max_missed_frames >= 0, "tracking.max_missed_frames must be >= 0")
        _check(0.0 <= self.min_iou <= 1.0, "tracking.min_iou must be in [0, 1]")
        _check(self.max_distance >= 0, "tracking.max_distance must be >= 0")
        _check(self.distance_weight >= 0, "tracking.distance_weight must be >= 0")
        _check_choice("tracking.motion", self.motion, MOTION_MODELS)
        _check(
            0.0 < self.velocity_smoothing <= 1.0, "tracking.velocity_smoothing must be in (0, 1]"
        )


@dataclass(frozen=True)
class DepthConfig:
    """3D per instance from an aligned depth image (``pipeline/depth3d.py``); off by default.

    The node then subscribes to ``depth`` (sensor_msgs/Image, 16UC1 millimetres or 32FC1
    metres, aligned to the colour frame) and ``camera_info``, and pairs each colour frame with
    the depth image whose stamp is nearest, within ``slop_ms``. Positions are medians over the
    mask eroded by ``erode_px`` (edge pixels mix object and background depth); extents are the
    ``extent_low``-``extent_high`` percentile range per axis scaled to the full width of an
    evenly covered surface; fewer than ``min_valid_pixels`` valid depths give NaN.
    """

    enabled: bool = False
    slop_ms: float = 15.0
    # After segmenting, wait this long for a matching depth image still on its way.
    wait_ms: float = 50.0
    # Depth images kept for matching (at 30 Hz, 10 cover a third of a second).
    buffer: int = 10
    erode_px: int = 2
    min_valid_pixels: int = 20
    min_depth_m: float = 0.1
    max_depth_m: float = 20.0
    extent_low: float = 5.0
    extent_high: float = 95.0
    # ~/points (PointCloud2: x, y, z, instance_id, class_id, track_id), while subscribed.
    points: bool = True
    points_stride: int = 4
    # No depth image for this long while frames arrive: diagnostics warn that depth stopped.
    timeout_s: float = 2.0

    def __post_init__(self) -> None:
        _check(self.slop_ms >= 0, "depth.slop_ms must be >= 0")
        _check(self.wait_ms >= 0, "depth.wait_ms must be >= 0")
        _check(1 <= self.buffer <= 100, "depth.buffer must be in [1, 100]")
        _check(self.erode_px >= 0, "depth.erode_px must be >= 0")
        _check(self.min_valid_pixels >= 1, "depth.min_valid_pixels must be >= 1")
        _check(0 <= self.min_depth_m < self.max_depth_m, "need 0 <= depth.min_depth_m < max")
        _check(
            0.0 <= self.extent_low < self.extent_high <= 100.0,
            "need 0 <= depth.extent_low < depth.extent_high <= 100",
        )
        _check(self.points_stride >= 1, "depth.points_stride must be >= 1")
        _check(self.timeout_s > 0, "depth.timeout_s must be > 0")


RELIABILITIES = ("best_effort", "reliable")  # ROS 2 QoS reliability policies


@dataclass(frozen=True)
class InputConfig:
    """Camera input of the ROS node.

    ``transport``: ``raw`` (sensor_msgs/Image on ``image``) or ``compressed``
    (CompressedImage on ``image/compressed``). ``max_age_ms``: drop frames older than this
    (0 = off; ignored in benchmark mode, where stamps may be rewritten).
    """

    transport: str = "raw"
    reliability: str = "best_effort"
    depth: int = 1
    max_age_ms: float = 0.0

    def __post_init__(self) -> None:
        _check_choice("input.transport", self.transport, ("raw", "compressed"))
        _check_choice("input.reliability", self.reliability, RELIABILITIES)
        _check(1 <= self.depth <= 100, "input.depth must be in [1, 100]")
        _check(self.max_age_ms >= 0, "input.max_age_ms must be >= 0")


@dataclass(frozen=True)
class OutputConfig:
    """What the node publishes and how (outputs are reliable by default, REP-2003)."""

    reliability: str = "reliable"
    depth: int = 2
    label_image: bool = True
    semantic: bool = True
    # ~/panoptic (32SC1, class * 1000 + instance id) in the pipeline's panoptic mode.
    panoptic: bool = True
    overlay_max_rate_hz: float = 2.0

    def __post_init__(self) -> None:
        _check_choice("output.reliability", self.reliability, RELIABILITIES)
        _check(1 <= self.depth <= 100, "output.depth must be in [1, 100]")
        _check(self.overlay_max_rate_hz >= 0, "output.overlay_max_rate_hz must be >= 0")


@dataclass(frozen=True)
class NodeConfig:
    """Parameters of the ``ranksam`` ROS 2 node (each field is a ROS parameter, dotted)."""

    # The engine (see BackendConfig; flat because each is a ROS parameter name). The node
    # ships with the gated adapters on.
    model: str = BackendConfig.model
    adapter: str = "gated"
    backend: str = BackendConfig.backend
    # onnxruntime / tensorrt with a shipped model name: export it into the cache at configure
    # when its export is missing (tens of seconds, once). False: configure fails and names the
    # `ranksam export` command, so a robot never starts a slow export unexpectedly.
    export_if_missing: bool = False
    threads: int = BackendConfig.threads
    # Test-time augmentation: "flip" averages each frame with its mirror image (twice the
    # model time; box mIoU in docs/results.md).
    tta: str = BackendConfig.tta
    # Dense outputs of the model's multi-task set published on ~/tasks/<name> (e.g.
    # [boundary, centre]); empty: none (the set is not even loaded).
    tasks: tuple[str, ...] = BackendConfig.tasks
    # PA-SAM's prompt adapter in the mask decoder: a decoder set of the model (pa_sam) or none.
    prompt_adapter: str = BackendConfig.prompt_adapter
    # int8: onnxruntime runs the export's quantised encoder (ranksam export --precision int8).
    precision: str = BackendConfig.precision
    cameras: tuple[str, ...] = ()
    prompts_mode: str = "auto"
    benchmark_mode: bool = False
    diagnostics_period_s: float = 1.0
    input: InputConfig = field(default_factory=InputConfig)
    output: OutputConfig = field(default_factory=OutputConfig)
    pipeline: PipelineConfig = field(default_factory=PipelineConfig)
    tracking: TrackingConfig = field(default_factory=TrackingConfig)
    depth: DepthConfig = field(default_factory=DepthConfig)

    def __post_init__(self) -> None:
        self.backend_config()  # checks backend, tta and threads
        _check_choice("prompts_mode", self.prompts_mode, ("auto", "external", "hybrid"))
        _check(self.diagnostics_period_s > 0, "diagnostics_period_s must be > 0")
        _check(len(set(self.cameras)) == len(self.cameras), "cameras must be unique")
        for name in self.cameras:
            _check(
                name.replace("_", "").isalnum() and not name[0].isdigit(),
                f"camera name {name!r} must be a valid ROS name token",
            )

    def backend_config(self) -> BackendConfig:
        """The engine this node loads, from its flat parameters."""
        return backend_config_of(self)
