"""``ranksam_node``: a lifecycle node turning camera frames into per-instance masks.

configure: read parameters, load the backend (failure -> clear error, FAILURE); activate:
subscribe; deactivate: unsubscribe; cleanup: release everything. Subscriptions only drop the
newest frame into a slot; one worker thread runs the model on the newest frame of each camera
(several cameras share one loaded model) and publishes, so queues never build up.
"""

from __future__ import annotations

import sys
import threading
import time
import traceback

import numpy as np
import rclpy
from ranksam_msgs.msg import ClassList, PromptArray, SegmentationMasks
from ranksam_msgs.srv import SegmentImage
from rclpy.executors import MultiThreadedExecutor
from rclpy.lifecycle import LifecycleNode, LifecycleState, TransitionCallbackReturn
from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy

from ranksam_ros.config import NodeConfig
from ranksam_ros.pipeline.overlay import draw_overlay
from ranksam_ros.pipeline.pipeline import Pipeline, PromptSet
from ranksam_ros.ros import conversions
from ranksam_ros.ros.camera import CameraIO
from ranksam_ros.ros.diagnostics import diagnostics_message
from ranksam_ros.ros.params import check_update, declare_parameters, read_config

PROMPT_SOURCE = {
    "auto": SegmentationMasks.PROMPT_AUTO,
    "external": SegmentationMasks.PROMPT_EXTERNAL,
    "hybrid": SegmentationMasks.PROMPT_HYBRID,
}


class RankSamNode(LifecycleNode):
    """The segmentation node (name ``ranksam``); parameters come from :class:`NodeConfig`."""

    def __init__(self, name: str = "ranksam", **kwargs) -> None:
        super().__init__(name, **kwargs)
        declare_parameters(self)
        self.add_on_set_parameters_callback(self._on_set_parameters)
        self.cfg: NodeConfig | None = None
        self.pipeline: Pipeline | None = None
        self.cameras: list[CameraIO] = []
        self.model_lock = threading.Lock()
        self.wake = threading.Event()
        self.running = False
        self.worker: threading.Thread | None = None
        self.external: PromptArray | None = None
        self.active = False
        self._entities: list = []

    # Lifecycle -------------------------------------------------------------------------------
    def on_configure(self, state: LifecycleState) -> TransitionCallbackReturn:
        try:
            self.cfg = read_config(self)
            self.pipeline = self._load_pipeline(self.cfg)
        except Exception as exc:  # any load failure must end in a clean FAILURE, not a crash
            self.get_logger().error(f"configure failed: {exc}")
            self.pipeline = None
            return TransitionCallbackReturn.FAILURE
        names = list(self.cfg.cameras) or [""]
        self.cameras = [
            CameraIO(self, n, self.cfg.input, self.cfg.output, self.wake) for n in names
        ]
        latched = QoSProfile(
            depth=1,
            reliability=ReliabilityPolicy.RELIABLE,
            durability=DurabilityPolicy.TRANSIENT_LOCAL,
        )
        labels = self.create_publisher(ClassList, "~/labels", latched)
        labels.publish(
            ClassList(model_id=self.model_id, class_names=list(self.pipeline.class_names))
        )
        from diagnostic_msgs.msg import DiagnosticArray

        self.diag_pub = self.create_publisher(DiagnosticArray, "/diagnostics", 10)
        self._entities = [
            labels,
            self.diag_pub,
            self.create_subscription(PromptArray, "~/prompts", self._on_prompts, 5),
            self.create_service(SegmentImage, "~/segment", self._on_segment),
            self.create_timer(self.cfg.diagnostics_period_s, self._publish_diagnostics),
        ]
        self.get_logger().info(
            f"configured {self.model_id} on {len(self.cameras)} camera(s): "
            + ", ".join(c.input_topic for c in self.cameras)
        )
        return TransitionCallbackReturn.SUCCESS

    def on_activate(self, state: LifecycleState) -> TransitionCallbackReturn:
        for camera in self.cameras:
            camera.subscribe()
        self.running, self.active = True, True
        self.worker = threading.Thread(target=self._work, name="ranksam-worker", daemon=True)
        self.worker.start()
        return TransitionCallbackReturn.SUCCESS

    def on_deactivate(self, state: LifecycleState) -> TransitionCallbackReturn:
        self._stop_worker()
        for camera in self.cameras:
            camera.unsubscribe()
        self.active = False
        return TransitionCallbackReturn.SUCCESS

    def on_cleanup(self, state: LifecycleState) -> TransitionCallbackReturn:
        self._release()
        return TransitionCallbackReturn.SUCCESS

    def on_shutdown(self, state: LifecycleState) -> TransitionCallbackReturn:
        self._release()
        return TransitionCallbackReturn.SUCCESS

    def on_error(self, state: LifecycleState) -> TransitionCallbackReturn:
        self._release()
        return TransitionCallbackReturn.SUCCESS

    def _release(self) -> None:
        self._stop_worker()
        for camera in self.cameras:
            camera.destroy()
        for entity in self._entities:
            for destroy in (
                self.destroy_publisher,
                self.destroy_subscription,
                self.destroy_service,
                self.destroy_timer,
            ):
                try:
                    destroy(entity)
                    break
                except (TypeError, AttributeError, ValueError):
                    continue
        self.cameras, self._entities, self.pipeline, self.active = [], [], None, False

    def _stop_worker(self) -> None:
        self.running = False
        self.wake.set()
        if self.worker is not None and self.worker is not threading.current_thread():
            self.worker.join(timeout=30)
        self.worker = None

    # Model -----------------------------------------------------------------------------------
    def _load_pipeline(self, cfg: NodeConfig) -> Pipeline:
        from ranksam_ros.backends import create_backend

        started = time.perf_counter()
        backend = create_backend(cfg.backend_config())
        self.model_id = backend.info.model_id
        self.load_seconds = time.perf_counter() - started
        self.get_logger().info(
            f"loaded {self.model_id} ({cfg.backend}) in {self.load_seconds:.2f} s"
        )
        if cfg.prompts_mode != "external" and not backend.info.class_names:
            raise ValueError(
                f"prompts_mode={cfg.prompts_mode} needs a model with a prompt predictor"
            )
        return Pipeline(backend, cfg.pipeline)

    def _on_set_parameters(self, parameters: list):
        result, new_cfg = check_update(self, parameters, self.active)
        if result.successful and new_cfg is not None and self.pipeline is not None:
            self.cfg = new_cfg
            self.pipeline.cfg = new_cfg.pipeline
        return result

    # Processing ------------------------------------------------------------------------------
    def _work(self) -> None:
        while self.running:
            self.wake.wait(timeout=0.5)
            self.wake.clear()
            for camera in list(self.cameras):
                item = camera.slot.take()
                if item is not None and self.running:
                    self._process(camera, *item)
                    if any(c.slot.has_frame() for c in self.cameras):
                        self.wake.set()

    def _process(self, camera: CameraIO, item: tuple, received: float) -> None:
        start = time.perf_counter()
        msg, rgb = item
        if rgb is None:
            try:
                rgb = conversions.compressed_to_rgb(msg)
            except conversions.BadImageError as exc:
                camera.reject(exc)
                return
        if self._too_old(msg):
            camera.counters.stale += 1
            return
        conversion_ms = (time.perf_counter() - start) * 1000.0
        try:
            self._segment_and_publish(camera, msg, rgb, start, conversion_ms)
        except Exception as exc:  # keep serving: count, log, carry on
            camera.counters.errors += 1
            camera.counters.last_error = f"{type(exc).__name__}: {exc}"
            self.get_logger().error(
                f"processing failed: {exc}\n{traceback.format_exc(limit=3)}",
                throttle_duration_sec=5.0,
            )

    def _too_old(self, msg) -> bool:
        limit = self.cfg.input.max_age_ms
        if self.cfg.benchmark_mode or limit <= 0:
            return False
        stamp = msg.header.stamp.sec + msg.header.stamp.nanosec * 1e-9
        now = self.get_clock().now().nanoseconds * 1e-9
        return (now - stamp) * 1000.0 > limit

    def _prompt_set(self) -> tuple[PromptSet | None, bool]:
        mode = self.cfg.prompts_mode
        if mode == "auto" or self.external is None:
            return None, mode != "external"
        points, boxes, classes = conversions.prompts_from_msg(self.external)
        return PromptSet(points, boxes, classes), mode == "hybrid"

    def _segment_and_publish(
        self, camera: CameraIO, msg, rgb: np.ndarray, start: float, conversion_ms: float
    ) -> None:
        prompts, auto = self._prompt_set()
        with self.model_lock:
            frame = self.pipeline.encode(rgb, need_maps=self.pipeline.needs_prompt_maps(auto))
            if prompts is None and not auto:
                result = self.pipeline.segment(frame, PromptSet())  # external mode, no prompts yet
            else:
                result = self.pipeline.segment(frame, prompts, auto=auto)
        camera.cache = (frame, msg.header)
        built = time.perf_counter()
        counters = camera.counters
        timing = {"conversion": conversion_ms}
        out = conversions.segmentation_to_msg(
            result,
            msg.header,
            self.model_id,
            PROMPT_SOURCE[self.cfg.prompts_mode],
            timing,
            counters.dropped_since_output,
            self.external if prompts is not None else None,
        )
        if camera.label_pub is not None:
            camera.label_pub.publish(conversions.label_image(result.instance_ids, msg.header))
        if camera.semantic_pub is not None:
            camera.semantic_pub.publish(conversions.label_image(result.semantic, msg.header))
        out.timing.message_ms = (time.perf_counter() - built) * 1000.0
        out.timing.total_ms = (time.perf_counter() - start) * 1000.0
        camera.masks_pub.publish(out)
        counters.dropped_since_output = 0
        counters.processed += 1
        counters.done_times.append(time.monotonic())
        counters.stage_ms.append(
            {**result.timings_ms, "conversion": conversion_ms, "total": out.timing.total_ms}
        )
        if result.active_rank is not None:
            counters.active_ranks.append(result.active_rank)
        if camera.overlay_due(self.cfg.output.overlay_max_rate_hz):
            camera.overlay_pub.publish(
                conversions.rgb_to_image(draw_overlay(rgb, result), msg.header)
            )

    def _on_prompts(self, msg: PromptArray) -> None:
        try:
            conversions.prompts_from_msg(msg)
        except ValueError as exc:
            self.get_logger().warn(f"ignored prompts: {exc}", throttle_duration_sec=5.0)
            return
        self.external = msg if msg.prompts else None

    def _on_segment(self, request: SegmentImage.Request, response: SegmentImage.Response):
        response.success = False
        try:
            response.result = self._segment_request(request)
            response.success, response.message = True, "ok"
        except (ValueError, RuntimeError, LookupError) as exc:
            response.message = str(exc)
        return response

    def _segment_request(self, request: SegmentImage.Request) -> SegmentationMasks:
        if self.pipeline is None:
            raise RuntimeError("node is not configured")
        prompts = None
        if request.prompts.prompts:
            prompts = PromptSet(*conversions.prompts_from_msg(request.prompts))
        start = time.perf_counter()
        with self.model_lock:
            if request.image.width and request.image.height:
                frame, header = (
                    self.pipeline.encode(conversions.image_to_rgb(request.image)),
                    request.image.header,
                )
            else:
                frame, header = self._cached(request.camera)
            result = self.pipeline.segment(frame, prompts)
        timing = {"total": (time.perf_counter() - start) * 1000.0}
        return conversions.segmentation_to_msg(
            result,
            header,
            self.model_id,
            SegmentationMasks.PROMPT_SERVICE,
            timing,
            0,
            request.prompts if prompts else None,
        )

    def _cached(self, name: str):
        for camera in self.cameras:
            if camera.name == name or (not name and camera is self.cameras[0]):
                if camera.cache is None:
                    raise LookupError(f"camera {name or camera.input_topic!r} has no frame yet")
                return camera.cache
        raise LookupError(f"unknown camera {name!r}; cameras: {[c.name for c in self.cameras]}")

    def _publish_diagnostics(self) -> None:
        self.diag_pub.publish(diagnostics_message(self, self.cameras, self.model_id, self.active))


def main(args: list[str] | None = None) -> int:
    """Console script ``ranksam_node`` (``--no-autostart`` leaves it unconfigured)."""
    argv = list(sys.argv if args is None else args)
    autostart = "--no-autostart" not in argv
    argv = [a for a in argv if a not in ("--autostart", "--no-autostart")]
    rclpy.init(args=argv)
    node = RankSamNode()
    executor = MultiThreadedExecutor(num_threads=2)
    executor.add_node(node)
    code = 0
    try:
        if autostart:
            if node.trigger_configure() != TransitionCallbackReturn.SUCCESS:
                node.get_logger().fatal("autostart: configure failed (see the error above)")
                return 1
            node.trigger_activate()
        executor.spin()
    except (KeyboardInterrupt, rclpy.executors.ExternalShutdownException):
        pass
    finally:
        node._stop_worker()
        executor.shutdown()
        node.destroy_node()
        rclpy.try_shutdown()
    return code


if __name__ == "__main__":
    sys.exit(main())
