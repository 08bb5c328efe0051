"""One camera's inputs and outputs: newest-frame slot, counters, topics and publishers.

A camera also owns its tracker (track ids are per camera) and, with ``depth.enabled``, its
depth input (``<cam>/depth``, ``<cam>/camera_info``) and the ``~/<cam>/points`` cloud.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from dataclasses import dataclass, field

import numpy as np
from ranksam_msgs.msg import SegmentationMasks
from sensor_msgs.msg import CompressedImage, Image, PointCloud2
from std_msgs.msg import Header

from ranksam_ros.graph.preprocess import ResizeInfo
from ranksam_ros.node_config import DepthConfig, InputConfig, OutputConfig, TrackingConfig
from ranksam_ros.pipeline.result import Segmentation
from ranksam_ros.pipeline.tracking import Tracker
from ranksam_ros.ros import conversions
from ranksam_ros.ros.depth_conversions import point_cloud
from ranksam_ros.ros.depth_input import DepthInput
from ranksam_ros.ros.image_input import BadImageError, image_to_rgb
from ranksam_ros.ros.qos import make_qos


class LatestSlot:
    """Holds only the newest unprocessed frame; overwriting one counts as a drop."""

    def __init__(self, wake: threading.Event) -> None:
        self._lock = threading.Lock()
        self._item: tuple[object, float] | None = None
        self._wake = wake

    def put(self, msg: object) -> bool:
        """Store ``msg``; True when it replaced a frame that was never processed."""
        with self._lock:
            replaced = self._item is not None
            self._item = (msg, time.monotonic())
        self._wake.set()
        return replaced

    def take(self) -> tuple[object, float] | None:
        with self._lock:
            item, self._item = self._item, None
        return item

    def has_frame(self) -> bool:
        with self._lock:
            return self._item is not None

    def clear(self) -> None:
        with self._lock:
            self._item = None


@dataclass
class CameraCounters:
    """Totals since configure, plus drops since the last published result."""

    received: int = 0
    processed: int = 0
    dropped: int = 0
    bad_input: int = 0
    stale: int = 0
    errors: int = 0
    dropped_since_output: int = 0
    last_error: str = ""
    stage_ms: deque = field(default_factory=lambda: deque(maxlen=100))
    done_times: deque = field(default_factory=lambda: deque(maxlen=100))
    active_ranks: deque = field(default_factory=lambda: deque(maxlen=100))
    tracks_live: int = 0
    tracker_resets: int = 0

    def rate_hz(self) -> float:
        """Output rate over the last (up to 100) results."""
        if len(self.done_times) < 2:
            return 0.0
        span = self.done_times[-1] - self.done_times[0]
        return (len(self.done_times) - 1) / span if span > 0 else 0.0


class CameraIO:
    """Topics of one camera: ``<cam>/image[/compressed]`` in, ``~/<cam>/...`` out.

    Args:
        node: The owning node.
        name: Camera name ("" for a single, un-namespaced camera).
        inputs: Transport and QoS of the input.
        outputs: Which outputs and their QoS.
        wake: Event set whenever a frame arrives.
        tracking: Settings of the camera's tracker.
        depth: Depth settings; with ``enabled``, the depth input and ``points`` publisher.
        tasks: Multi-task outputs published on ``~/tasks/<name>``.
    """

    def __init__(
        self,
        node,
        name: str,
        inputs: InputConfig,
        outputs: OutputConfig,
        wake: threading.Event,
        tracking: TrackingConfig | None = None,
        depth: DepthConfig | None = None,
        tasks: tuple[str, ...] = (),
    ) -> None:
        self.node = node
        self.name = name
        self.inputs = inputs
        prefix = f"{name}/" if name else ""
        self.input_topic = f"{prefix}image" + (
            "/compressed" if inputs.transport == "compressed" else ""
        )
        self.slot = LatestSlot(wake)
        self.counters = CameraCounters()
        self.cache = None  # (EncodedFrame, Header) of the latest processed frame, for the service
        self.subscription = None
        out_qos = make_qos(outputs.reliability, outputs.depth)
        self.masks_pub = node.create_publisher(SegmentationMasks, f"~/{prefix}masks", out_qos)
        self.label_pub = (
            node.create_publisher(Image, f"~/{prefix}label_image", out_qos)
            if outputs.label_image
            else None
        )
        self.semantic_pub = (
            node.create_publisher(Image, f"~/{prefix}semantic", out_qos)
            if outputs.semantic
            else None
        )
        self.panoptic_pub = (
            node.create_publisher(Image, f"~/{prefix}panoptic", out_qos)
            if outputs.panoptic
            else None
        )
        self.task_pubs = {
            task: node.create_publisher(Image, f"~/{prefix}tasks/{task}", out_qos) for task in tasks
        }
        self.overlay_pub = node.create_publisher(
            Image, f"~/{prefix}overlay", make_qos("best_effort", 1)
        )
        self.last_overlay = 0.0
        self.tracker = Tracker(tracking)
        depth = depth or DepthConfig()
        self.depth = DepthInput(node, prefix, inputs, depth) if depth.enabled else None
        self.points_pub = (
            node.create_publisher(PointCloud2, f"~/{prefix}points", out_qos)
            if depth.enabled and depth.points
            else None
        )

    def subscribe(self) -> None:
        msg_type = CompressedImage if self.inputs.transport == "compressed" else Image
        qos = make_qos(self.inputs.reliability, self.inputs.depth)
        self.subscription = self.node.create_subscription(
            msg_type, self.input_topic, self._on_frame, qos
        )
        if self.depth is not None:
            self.depth.subscribe()

    def unsubscribe(self) -> int:
        """Stop taking frames; returns 1 if destroying the subscription failed (logged)."""
        failures = 0
        if self.subscription is not None:
            failures = self.node.destroy_entities([self.subscription])
            self.subscription = None
        if self.depth is not None:
            failures += self.depth.unsubscribe()
        self.slot.clear()
        self.tracker.reset()  # a gap of unknown length: old tracks would match by chance
        return failures

    def destroy(self) -> int:
        """Unsubscribe and destroy the publishers; returns how many failed (each logged)."""
        publishers = (
            self.masks_pub,
            self.label_pub,
            self.semantic_pub,
            self.panoptic_pub,
            self.overlay_pub,
            self.points_pub,
        )
        failures = self.unsubscribe()
        publishers += tuple(self.task_pubs.values())
        failures += self.node.destroy_entities([p for p in publishers if p is not None])
        self.task_pubs = {}
        self.masks_pub = self.label_pub = self.semantic_pub = None
        self.panoptic_pub = self.overlay_pub = self.points_pub = None
        return failures

    def _on_frame(self, msg) -> None:
        # Executor thread: keep it cheap. Raw frames are validated (and viewed as RGB, no
        # copy for rgb8) here so every malformed one is counted even when frames arrive faster
        # than the model runs; compressed frames are decoded by the worker.
        counters = self.counters
        counters.received += 1
        rgb = None
        if self.inputs.transport == "raw":
            try:
                rgb = image_to_rgb(msg)
            except BadImageError as exc:
                self.reject(exc)
                return
        if self.slot.put((msg, rgb)):
            counters.dropped += 1
            counters.dropped_since_output += 1

    def reject(self, exc: Exception) -> None:
        """Count and (rate-limited) log a malformed frame."""
        self.counters.bad_input += 1
        self.counters.last_error = str(exc)
        self.node.get_logger().warn(
            f"{self.input_topic}: dropped bad frame: {exc}", throttle_duration_sec=5.0
        )

    def points_wanted(self) -> bool:
        """True when ``~/points`` exists and someone subscribes to it."""
        return self.points_pub is not None and self.points_pub.get_subscription_count() > 0

    def overlay_due(self, max_rate_hz: float) -> bool:
        """True when someone listens to the overlay and the rate cap allows one now."""
        if max_rate_hz <= 0 or self.overlay_pub.get_subscription_count() == 0:
            return False
        now = time.monotonic()
        if now - self.last_overlay < 1.0 / max_rate_hz:
            return False
        self.last_overlay = now
        return True

    def publish_maps(
        self,
        result: Segmentation,
        task_maps: dict[str, np.ndarray],
        geometry: ResizeInfo,
        header: Header,
        points: np.ndarray | None,
    ) -> None:
        """Publish the frame's images (labels, semantic, panoptic, tasks) and point cloud.

        Each goes out only where its publisher exists (the output parameters chose them);
        ``~/masks`` is the node's, published last so its timing covers these.
        """
        if points is not None:
            self.points_pub.publish(point_cloud(points, header))
        if self.label_pub is not None:
            self.label_pub.publish(conversions.label_image(result.instance_ids, header))
        if self.semantic_pub is not None:
            self.semantic_pub.publish(conversions.label_image(result.semantic, header))
        if self.panoptic_pub is not None and result.panoptic is not None:
            self.panoptic_pub.publish(conversions.panoptic_image(result.panoptic, header))
        for task, values in task_maps.items():
            self.task_pubs[task].publish(conversions.task_image(task, values, geometry, header))
