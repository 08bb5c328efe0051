"""Player and monitor over DDS: replay raw bag frames with unique stamps, time the outputs.

One rclpy node in a private context. The player thread publishes serialised frames (LOOPING at
a target rate, frame ``i mod N``, or TIMELINE with the bag's timing) after writing a unique,
wall-clock-like stamp into the CDR bytes. The monitor subscribes to the output with a raw
subscription and reads the stamp from the same bytes, so outputs match inputs without
deserialising. A sample of matched outputs is kept to read the node's stage timings.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import numpy as np
import rclpy
from diagnostic_msgs.msg import DiagnosticArray
from rclpy.callback_groups import MutuallyExclusiveCallbackGroup
from rclpy.context import Context
from rclpy.qos import QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import CameraInfo, CompressedImage, Image

from ranksam_ros.bench.bags import COMPRESSED, BagFrames
from ranksam_ros.bench.cdr import CdrError, StampSequence, stamp_key, with_stamp
from ranksam_ros.bench.depth_bag import CAMERA_INFO, Companion
from ranksam_ros.ros.executor import SpinningExecutor
from ranksam_ros.ros.qos import make_qos

MODEL_STAGES = ("preprocess_ms", "encoder_ms", "prompt_ms", "decoder_ms", "postprocess_ms")


def qos(reliability: str, depth: int) -> QoSProfile:
    """KEEP_LAST ``depth``, volatile, ``best_effort`` or ``reliable`` (the node's own rule)."""
    return make_qos(reliability, depth)


# rcl_interfaces/ParameterValue field holding each ParameterType (1..9).
_VALUE_FIELDS = {
    1: "bool_value",
    2: "integer_value",
    3: "double_value",
    4: "string_value",
    5: "byte_array_value",
    6: "bool_array_value",
    7: "integer_array_value",
    8: "double_array_value",
    9: "string_array_value",
}


def _python_value(value) -> object:
    """A ``ParameterValue`` as a plain Python value (None when unset)."""
    name = _VALUE_FIELDS.get(value.type)
    if name is None:
        return None
    result = getattr(value, name)
    return list(result) if value.type >= 5 else result


@dataclass
class RunRecord:
    """What one run sent and received (monotonic ns) plus sampled raw outputs."""

    rate_hz: float
    started: float = 0.0  # time.monotonic() of the first send
    ended: float = 0.0  # after draining
    sent: dict[int, int] = field(default_factory=dict)
    received: dict[int, int] = field(default_factory=dict)
    samples: dict[int, bytes] = field(default_factory=dict)
    late_sends: int = 0

    def model_ms(self, deserialize: Callable[[bytes], object]) -> dict[int, float]:
        """Stamp -> the node's model stages (ms) of each sampled output of this run."""
        out = {}
        for key, raw in self.samples.items():
            if key in self.sent:
                timing = deserialize(raw).timing
                out[key] = float(sum(getattr(timing, name) for name in MODEL_STAGES))
        return out


class Monitor:
    """Arrival times of outputs keyed by header stamp; keeps every ``sample_every``-th output."""

    def __init__(self, sample_every: int = 1) -> None:
        self.lock = threading.Lock()
        self.received: dict[int, int] = {}
        self.samples: dict[int, bytes] = {}
        self.sample_every = max(1, sample_every)
        self.count = 0
        self.last_arrival = 0.0
        self.first_arrival: float | None = None

    def __call__(self, raw: bytes) -> None:
        now = time.monotonic_ns()
        try:
            key = stamp_key(raw)
        except CdrError:
            return
        with self.lock:
            self.count += 1
            self.last_arrival = now / 1e9
            if self.first_arrival is None:
                self.first_arrival = now / 1e9
            if key not in self.received:
                self.received[key] = now
                if self.count % self.sample_every == 0:
                    self.samples[key] = raw

    def reset(self) -> None:
        with self.lock:
            self.received, self.samples = {}, {}

    def take(self) -> tuple[dict[int, int], dict[int, bytes]]:
        with self.lock:
            return dict(self.received), dict(self.samples)


class BenchNode:
    """The benchmark's own ROS node: publisher of frames, monitor of outputs, optional recorder.

    Args:
        frames: Serialised camera frames (their stamps are rewritten on send).
        input_topic: The node's input topic.
        output_topic: The node's ``SegmentationMasks`` topic.
        input_reliability: QoS of the frame publisher (match the node's input QoS; default
            best effort).
        node_name: Name of the node under test (to recognise its diagnostics).
        sample_every: Keep every k-th output to read its stage timings.
        recorder: Optional :class:`ranksam_ros.bench.record.BagRecorder`.
        adapt_qos: Switch to a reliable publisher when the node's input is reliable only.
        companions: Depth and CameraInfo messages sent just before each frame, with its stamp.
    """

    def __init__(
        self,
        frames: BagFrames,
        input_topic: str,
        output_topic: str,
        input_reliability: str | None = None,
        node_name: str = "ranksam",
        sample_every: int = 1,
        recorder=None,
        adapt_qos: bool = False,
        companions: list[Companion] | None = None,
    ) -> None:
        self.frames = frames
        self.companions = list(companions or [])
        self.input_topic, self.output_topic = input_topic, output_topic
        self.node_name = node_name
        self.recorder = recorder
        self.monitor = Monitor(sample_every)
        self.stamps = StampSequence()
        self.diagnostics_seen = False
        self.context = Context()
        rclpy.init(args=[], context=self.context)
        self.node = rclpy.create_node("ranksam_bench", context=self.context)
        self.publisher_type = CompressedImage if frames.msgtype == COMPRESSED else Image
        self.input_reliability, self.adapt_qos = input_reliability or "best_effort", adapt_qos
        self.publisher = self.node.create_publisher(
            self.publisher_type, input_topic, qos(self.input_reliability, 1)
        )
        self.companion_pubs = self._companion_publishers()
        self.node.create_subscription(DiagnosticArray, "/diagnostics", self._on_diagnostics, 10)
        self.monitor_group = MutuallyExclusiveCallbackGroup()
        self.monitor_sub = None
        self.executor = SpinningExecutor(2, context=self.context, name="bench-spin")
        self.executor.add_node(self.node)
        self.executor.start()

    def _companion_publishers(self) -> list:
        """One publisher per companion topic, with the frames' reliability."""
        return [
            self.node.create_publisher(
                CameraInfo if c.msgtype == CAMERA_INFO else Image,
                c.node_topic,
                qos(self.input_reliability, 1),
            )
            for c in self.companions
        ]

    # Start-up ----------------------------------------------------------------------------------
    def _on_diagnostics(self, msg: DiagnosticArray) -> None:
        if any(s.name.startswith(f"{self.node_name}:") for s in msg.status):
            self.diagnostics_seen = True

    def _match_input_qos(self) -> None:
        """Publish reliably when the only subscribers of the input are reliable ones."""
        infos = self.node.get_subscriptions_info_by_topic(self.input_topic)
        reliable = [i.qos_profile.reliability == ReliabilityPolicy.RELIABLE for i in infos]
        if reliable and all(reliable) and self.input_reliability == "best_effort":
            self.node.destroy_publisher(self.publisher)
            self.input_reliability = "reliable"
            self.publisher = self.node.create_publisher(
                self.publisher_type, self.input_topic, qos("reliable", 1)
            )
            for publisher in self.companion_pubs:
                self.node.destroy_publisher(publisher)
            self.companion_pubs = self._companion_publishers()

    def remote_parameters(self, names: list[str], timeout: float = 5.0) -> dict:
        """Values of the node's parameters ``names`` through its GetParameters service."""
        from rcl_interfaces.srv import GetParameters

        client = self.node.create_client(GetParameters, f"/{self.node_name}/get_parameters")
        try:
            if not client.wait_for_service(timeout_sec=timeout):
                return {}
            future = client.call_async(GetParameters.Request(names=names))
            end = time.monotonic() + timeout
            while not future.done() and time.monotonic() < end:
                time.sleep(0.02)
            if not future.done() or future.result() is None:
                return {}
            values = future.result().values
            return {n: _python_value(v) for n, v in zip(names, values)}
        finally:
            self.node.destroy_client(client)

    def output_reliability(self) -> str:
        """``best_effort`` if any publisher of the output is best effort, else ``reliable``."""
        infos = self.node.get_publishers_info_by_topic(self.output_topic)
        best_effort = any(i.qos_profile.reliability == ReliabilityPolicy.BEST_EFFORT for i in infos)
        return "best_effort" if best_effort else "reliable"

    def wait_ready(self, timeout: float, check_alive: Callable[[], None]) -> None:
        """Block until the node subscribes to the input and publishes the output.

        Args:
            timeout: Seconds to wait.
            check_alive: Raises if the node under test died meanwhile.

        Raises:
            TimeoutError: Not ready in time (the message says what is missing).
        """
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            check_alive()
            if self.adapt_qos:
                self._match_input_qos()
            subscribed = self.publisher.get_subscription_count() > 0
            publishing = self.node.count_publishers(self.output_topic) > 0
            if subscribed and publishing:  # diagnostics only help explain a timeout
                break
            time.sleep(0.05)
        else:
            raise TimeoutError(
                f"node not ready after {timeout:.0f} s: subscribed to {self.input_topic}: "
                f"{self.publisher.get_subscription_count() > 0}, publishing "
                f"{self.output_topic}: {self.node.count_publishers(self.output_topic) > 0}, "
                f"diagnostics seen: {self.diagnostics_seen}"
            )
        self._subscribe_output()

    def _subscribe_output(self) -> None:
        from ranksam_msgs.msg import SegmentationMasks

        self.monitor_sub = self.node.create_subscription(
            SegmentationMasks,
            self.output_topic,
            self.monitor,
            qos(self.output_reliability(), 10),
            callback_group=self.monitor_group,
            raw=True,
        )
        if self.recorder is not None:
            self.recorder.subscribe(self.node, self.output_topic, self.output_reliability())

    def warm_up(self, timeout: float, check_alive: Callable[[], None], rate: float = 2.0) -> float:
        """Send frames until the first output arrives; returns its ``time.monotonic()``.

        Raises:
            TimeoutError: No output within ``timeout`` seconds.
        """
        end = time.monotonic() + timeout
        index = 0
        while self.monitor.first_arrival is None:
            check_alive()
            if time.monotonic() > end:
                raise TimeoutError(
                    f"no output on {self.output_topic} within {timeout:.0f} s although the node "
                    f"subscribes to {self.input_topic} ({self.input_reliability} frames sent: "
                    f"{index}; its diagnostics seen: {self.diagnostics_seen})"
                )
            self._send(index % len(self.frames), {})
            index += 1
            deadline = time.monotonic() + 1.0 / rate
            while self.monitor.first_arrival is None and time.monotonic() < deadline:
                time.sleep(0.01)
        return self.monitor.first_arrival

    # Runs --------------------------------------------------------------------------------------
    def _send(self, index: int, sent: dict[int, int]) -> None:
        stamp = self.stamps.next(time.time_ns())
        for companion, publisher in zip(self.companions, self.companion_pubs):
            raw = companion.raw[index]
            if raw is not None:  # depth first, as a camera driver sends it
                publisher.publish(with_stamp(raw, stamp))
        data = with_stamp(self.frames.raw[index], stamp)
        sent_at = time.monotonic_ns()
        self.publisher.publish(data)
        sent[stamp] = sent_at
        if self.recorder is not None:
            self.recorder.write(self.input_topic, time.time_ns(), data)

    def _schedule(self, mode: str, rate: float, duration: float) -> Iterator[tuple[float, int]]:
        """(offset s, frame index) pairs covering ``duration`` seconds."""
        count = len(self.frames)
        if mode == "looping":
            for k in range(max(1, int(round(duration * rate)))):
                yield k / rate, k % count
            return
        offsets = (self.frames.log_ns - self.frames.log_ns[0]) / 1e9
        gaps = np.diff(offsets)
        loop = offsets[-1] + (float(np.median(gaps)) if len(gaps) else 1.0 / rate)
        k = 0
        while True:
            for index, offset in enumerate(offsets):
                if k * loop + offset >= duration:
                    return
                yield k * loop + offset, index
            k += 1

    def run(self, rate: float, duration: float, mode: str = "looping") -> RunRecord:
        """Play for ``duration`` seconds, then wait for the outputs still in flight."""
        self.monitor.reset()
        record = RunRecord(rate)
        start = time.monotonic()
        record.started = start
        for offset, index in self._schedule(mode, rate, duration):
            delay = start + offset - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            elif delay < -1.0 / rate:  # fell behind by a whole period: do not burst
                record.late_sends += 1
                start -= delay
            self._send(index, record.sent)
        self._drain(record)
        record.ended = time.monotonic()
        record.received, record.samples = self.monitor.take()
        return record

    def _drain(self, record: RunRecord, cap: float = 30.0) -> None:
        """Wait until every frame is answered, or outputs stop coming for a while."""
        sent_end = time.monotonic()
        end = sent_end + cap
        while time.monotonic() < end:
            received, _ = self.monitor.take()
            latencies = [received[k] - t for k, t in record.sent.items() if k in received]
            if len(latencies) == len(record.sent):
                return
            idle = min(10.0, max(1.0, 2.0 * max(latencies, default=0) / 1e9))
            last = max(self.monitor.last_arrival, sent_end)
            if time.monotonic() - last > idle:
                return
            time.sleep(0.05)

    def close(self) -> None:
        """Stop spinning and release the private context.

        The executor stops first and waits for its running callbacks, so none of them meets a
        destroyed node or guard condition; then the node, then the context.
        """
        self.executor.stop()
        self.node.destroy_node()
        self.context.try_shutdown()
