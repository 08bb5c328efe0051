"""One camera's depth input: ``depth`` and ``camera_info`` subscriptions, stamp matching.

The callbacks only validate and store: a depth image becomes float32 metres in a short buffer
(``depth.buffer`` images), a CameraInfo becomes the current intrinsics. The worker, after
segmenting a colour frame, asks :meth:`DepthInput.match` for the depth image whose stamp is
nearest the frame's, within ``depth.slop_ms``; it waits up to ``depth.wait_ms`` for one that is
still on its way. Everything that goes wrong is counted (and reported in /diagnostics), never
raised: a frame without depth is published without 3D.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from dataclasses import dataclass

import numpy as np
from sensor_msgs.msg import CameraInfo, Image

from ranksam_ros.node_config import DepthConfig, InputConfig
from ranksam_ros.pipeline.depth3d import Intrinsics, IntrinsicsError
from ranksam_ros.ros.depth_conversions import depth_to_metres, intrinsics_from_camera_info
from ranksam_ros.ros.image_input import BadImageError
from ranksam_ros.ros.qos import make_qos


def stamp_ns(header) -> int:
    """A header's stamp in integer nanoseconds."""
    return int(header.stamp.sec) * 1_000_000_000 + int(header.stamp.nanosec)


@dataclass
class DepthCounters:
    """Depth totals since configure (diagnostics).

    Attributes:
        received: Depth images received.
        bad_depth: Depth images refused (encoding, size, data) or not aligned to the frame.
        info_received: CameraInfo messages received.
        bad_info: CameraInfo messages refused (zero focal length, binning, size).
        with_depth: Colour frames published with 3D.
        without_depth: Colour frames published without 3D (no match, no camera_info, bad).
        last_error: The latest reason a depth input was refused or a frame went without.
        last_received: ``time.monotonic()`` of the latest depth image (0 = none yet).
    """

    received: int = 0
    bad_depth: int = 0
    info_received: int = 0
    bad_info: int = 0
    with_depth: int = 0
    without_depth: int = 0
    last_error: str = ""
    last_received: float = 0.0

    def age_s(self) -> float:
        """Seconds since the latest depth image (inf before the first)."""
        return time.monotonic() - self.last_received if self.last_received else float("inf")


@dataclass
class DepthFrame:
    """A stored depth image: header stamp (ns) and ``(H, W)`` float32 metres."""

    stamp_ns: int
    metres: np.ndarray


class DepthInput:
    """The depth side of one camera: ``<cam>/depth`` and ``<cam>/camera_info``.

    Args:
        node: The owning node (creates and destroys the subscriptions).
        prefix: Topic prefix of the camera (``""`` or ``"front/"``).
        inputs: QoS of the camera input, used for depth too.
        cfg: Depth settings (``buffer`` sizes the store; the rest is read per frame).
    """

    def __init__(self, node, prefix: str, inputs: InputConfig, cfg: DepthConfig) -> None:
        self.node = node
        self.depth_topic, self.info_topic = f"{prefix}depth", f"{prefix}camera_info"
        self.inputs = inputs
        self.frames: deque[DepthFrame] = deque(maxlen=cfg.buffer)
        self.intrinsics: Intrinsics | None = None
        self.counters = DepthCounters()
        self.arrived = threading.Condition()
        self.subscriptions: list = []

    def subscribe(self) -> None:
        qos = make_qos(self.inputs.reliability, self.inputs.depth)
        self.subscriptions = [
            self.node.create_subscription(Image, self.depth_topic, self._on_depth, qos),
            self.node.create_subscription(CameraInfo, self.info_topic, self._on_info, qos),
        ]

    def unsubscribe(self) -> int:
        """Destroy the subscriptions and forget stored depth; returns how many failed."""
        failures = self.node.destroy_entities(self.subscriptions)
        self.subscriptions = []
        with self.arrived:
            self.frames.clear()
        return failures

    def _on_depth(self, msg: Image) -> None:
        counters = self.counters
        counters.received += 1
        counters.last_received = time.monotonic()
        try:
            metres = depth_to_metres(msg)
        except BadImageError as exc:
            self.refuse(exc, depth=True)
            return
        with self.arrived:
            self.frames.append(DepthFrame(stamp_ns(msg.header), metres))
            self.arrived.notify_all()

    def _on_info(self, msg: CameraInfo) -> None:
        self.counters.info_received += 1
        try:
            self.intrinsics = intrinsics_from_camera_info(msg)
        except IntrinsicsError as exc:
            self.refuse(exc, depth=False)

    def refuse(self, exc: Exception, depth: bool) -> None:
        """Count and (rate-limited) log a refused depth image or CameraInfo."""
        if depth:
            self.counters.bad_depth += 1
        else:
            self.counters.bad_info += 1
        topic = self.depth_topic if depth else self.info_topic
        self.counters.last_error = f"{topic}: {exc}"
        self.node.get_logger().warn(
            f"{topic}: dropped bad {'depth image' if depth else 'camera_info'}: {exc}",
            throttle_duration_sec=5.0,
        )

    def match(self, frame_stamp_ns: int, cfg: DepthConfig) -> tuple[DepthFrame, Intrinsics] | str:
        """The depth image (and intrinsics) for a colour frame, or why there is none.

        Waits up to ``cfg.wait_ms`` while no stored image is within ``cfg.slop_ms``, none newer
        than the window has arrived (the matching one may still be on its way) and the stream
        has not been silent for ``cfg.timeout_s``.

        Returns:
            ``(depth frame, intrinsics)``, or the reason as a string.
        """
        slop = int(cfg.slop_ms * 1e6)
        deadline = time.monotonic() + cfg.wait_ms / 1000.0
        with self.arrived:
            while True:
                best = min(
                    self.frames, key=lambda f: abs(f.stamp_ns - frame_stamp_ns), default=None
                )
                if best is not None and abs(best.stamp_ns - frame_stamp_ns) <= slop:
                    break
                newest = max((f.stamp_ns for f in self.frames), default=None)
                passed = newest is not None and newest > frame_stamp_ns + slop
                # A stream that stopped (or never started) must not cost every frame the wait.
                stopped = self.counters.age_s() > cfg.timeout_s
                remaining = deadline - time.monotonic()
                if remaining <= 0 or passed or stopped:
                    return self._no_match(best, frame_stamp_ns, cfg)
                self.arrived.wait(remaining)
        if self.intrinsics is None:
            return f"no valid camera_info on {self.info_topic} yet"
        return best, self.intrinsics

    def _no_match(self, best: DepthFrame | None, frame_stamp_ns: int, cfg: DepthConfig) -> str:
        if best is None:
            return f"no depth image on {self.depth_topic} (received {self.counters.received})"
        gap_ms = abs(best.stamp_ns - frame_stamp_ns) / 1e6
        return (
            f"no depth image within depth.slop_ms={cfg.slop_ms:g} of the frame "
            f"(nearest {gap_ms:.1f} ms away)"
        )
