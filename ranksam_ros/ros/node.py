"""``ranksam_node``: a lifecycle node turning camera frames into per-instance masks.

configure: check parameter names, read parameters, load the backend (failure -> clear error,
FAILURE); activate: subscribe; deactivate: unsubscribe; cleanup: release everything.
Subscriptions only drop the newest frame into a slot; one worker thread runs the model on the
newest frame of each camera (several cameras share one loaded model) and publishes, so queues
never build up. Track ids and 3D (``ros/spatial.py``) are added outside the model lock; each
camera publishes its images (``CameraIO.publish_maps``), the node ``~/masks`` last.
"""

from __future__ import annotations

import threading
import time
import traceback

import numpy as np
from ranksam_msgs.msg import ClassList, PromptArray, SegmentationMasks
from ranksam_msgs.srv import SegmentImage
from rclpy.lifecycle import LifecycleNode, LifecycleState, TransitionCallbackReturn
from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy

from ranksam_ros.node_config import NodeConfig
from ranksam_ros.pipeline.overlay import draw_overlay
from ranksam_ros.pipeline.pipeline import Pipeline, PromptSet
from ranksam_ros.ros import conversions, image_input, spatial
from ranksam_ros.ros.camera import CameraIO
from ranksam_ros.ros.depth_input import stamp_ns
from ranksam_ros.ros.diagnostics import diagnostics_message
from ranksam_ros.ros.entities import destroy_all
from ranksam_ros.ros.params import (
    check_update,
    declare_parameters,
    read_config,
    unknown_overrides,
    unknown_parameters_message,
)

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
        self.unknown_parameters = unknown_overrides(self)
        if self.unknown_parameters:  # said at start-up too: configure may be far away
            self.get_logger().error(unknown_parameters_message(self.unknown_parameters))
        self.add_on_set_parameters_callback(self._on_set_parameters)
        self.cfg: NodeConfig | None = None
        self.pipeline: Pipeline | None = None
        self.cameras: list[CameraIO] = []
        # Held while a frame is encoded and segmented, and while the config is swapped.
        self.model_lock = threading.Lock()
        self.wake = threading.Event()
        self.running = False
        self.worker: threading.Thread | None = None
        self.external: PromptArray | None = None
        self.active = False
        self.diag_pub = None
        self._entities: list = []
        # Held while entities are destroyed, so a callback never uses one half torn down.
        self._entities_lock = threading.Lock()
        self.release_errors = 0  # entities whose destruction failed unexpectedly (logged)

    # Lifecycle -------------------------------------------------------------------------------
    def on_configure(self, state: LifecycleState) -> TransitionCallbackReturn:
        try:
            self._check_parameter_names()
            self.cfg = read_config(self)
            self.pipeline = self._load_pipeline(self.cfg)
        except Exception as exc:  # any load failure must end in a clean FAILURE, not a crash
            self.get_logger().error(f"configure failed: {exc}")
            self.pipeline = None
            return TransitionCallbackReturn.FAILURE
        names = list(self.cfg.cameras) or [""]
        cfg = self.cfg
        self.cameras = [
            CameraIO(self, n, cfg.input, cfg.output, self.wake, cfg.tracking, cfg.depth, cfg.tasks)
            for n in names
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

    def _check_parameter_names(self) -> None:
        """A misspelt parameter must not silently run with the default it meant to change."""
        if self.unknown_parameters:
            raise ValueError(unknown_parameters_message(self.unknown_parameters))

    def on_activate(self, state: LifecycleState) -> TransitionCallbackReturn:
        if self.pipeline is None:
            self.get_logger().error("activate failed: no model loaded (configure first)")
            return TransitionCallbackReturn.FAILURE
        for camera in self.cameras:
            camera.subscribe()
        self.running, self.active = True, True
        self.worker = threading.Thread(target=self._work, name="ranksam-worker", daemon=True)
        self.worker.start()
        return TransitionCallbackReturn.SUCCESS

    def on_deactivate(self, state: LifecycleState) -> TransitionCallbackReturn:
        self._stop_worker()
        failures = sum(camera.unsubscribe() for camera in self.cameras)
        self.active = False
        return self._outcome("deactivate", failures)

    def on_cleanup(self, state: LifecycleState) -> TransitionCallbackReturn:
        return self._outcome("cleanup", self._release())

    def on_shutdown(self, state: LifecycleState) -> TransitionCallbackReturn:
        return self._outcome("shutdown", self._release())

    def on_error(self, state: LifecycleState) -> TransitionCallbackReturn:
        return self._outcome("error processing", self._release())

    def _outcome(self, transition: str, failures: int) -> TransitionCallbackReturn:
        """SUCCESS, or ERROR when entities failed to go (rclpy would not log why: we do)."""
        if not failures:
            return TransitionCallbackReturn.SUCCESS
        self.get_logger().error(
            f"{transition}: {failures} entit{'y' if failures == 1 else 'ies'} could not be "
            "destroyed (see the errors above)"
        )
        return TransitionCallbackReturn.ERROR

    def _release(self) -> int:
        """Stop the worker and destroy every entity made at configure.

        Returns:
            How many entities failed to be destroyed (each is logged and counted).
        """
        self._stop_worker()
        with self.model_lock:  # a service call may be segmenting right now
            self.pipeline = None
        with self._entities_lock:  # the diagnostics timer may be publishing right now
            failures = sum(camera.destroy() for camera in self.cameras)
            failures += self.destroy_entities(self._entities)
            self.cameras, self._entities, self.diag_pub, self.active = [], [], None, False
        return failures

    def destroy_entities(self, entities: list) -> int:
        """Destroy publishers, subscriptions, services and timers of this node.

        Returns:
            How many raised (each logged; see :func:`entities.destroy_all`).
        """
        failures = destroy_all(self, entities)
        self.release_errors += failures
        return failures

    def _stop_worker(self) -> None:
        self.running = False
        self.wake.set()
        if self.worker is not None and self.worker is not threading.current_thread():
            self.worker.join(timeout=30)
        self.worker = None

    # Model -----------------------------------------------------------------------------------
    def _load_pipeline(self, cfg: NodeConfig) -> Pipeline:
        from ranksam_ros.backends import create_backend

        self._export_if_missing(cfg)
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

    def _export_if_missing(self, cfg: NodeConfig) -> None:
        """Write the cached export an ONNX/TensorRT engine needs, if ``export_if_missing``.

        Engines never export on their own: without this opt-in a missing export fails
        configure with the ``ranksam export`` command to run. With it, that export runs here
        (tens of seconds, once; the cache keeps it for the next start).
        """
        from ranksam_ros.backends.onnx_backend import int8_refusal
        from ranksam_ros.deploy.cache import cache_dir_for, cached_export, is_export_dir
        from ranksam_ros.graph.manifest import read_manifest

        if cfg.backend == "torch" or not cfg.export_if_missing or is_export_dir(cfg.model):
            return
        adapter, precision = cfg.backend_config().adapter_spec, cfg.precision
        if is_export_dir(cache_dir_for(cfg.model, adapter, precision)):
            return
        self.get_logger().info(
            f"no cached {precision} export of {cfg.model}+{adapter}: exporting it"
        )
        started = time.perf_counter()
        target = cached_export(cfg.model, adapter, precision)
        self.get_logger().info(
            f"exported {cfg.model}+{adapter} to {target} in "
            f"{time.perf_counter() - started:.1f} s (export_if_missing)"
        )
        manifest = read_manifest(target)
        if not manifest.get("int8", {"accepted": True})["accepted"]:
            self.get_logger().warning(f"{target}: {int8_refusal(manifest)}")

    def _on_set_parameters(self, parameters: list):
        result, new_cfg = check_update(self, parameters, self.active)
        if result.successful and new_cfg is not None:
            # Swapped together under the model lock: a frame being segmented finishes with
            # the settings it started with, the next one starts with all of the new ones.
            with self.model_lock:
                if self.pipeline is not None:  # unconfigured: configure reads them
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
                rgb = image_input.compressed_to_rgb(msg)
            except image_input.BadImageError as exc:
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
        cfg = self.cfg
        limit = cfg.input.max_age_ms
        if cfg.benchmark_mode or limit <= 0:
            return False
        stamp = msg.header.stamp.sec + msg.header.stamp.nanosec * 1e-9
        now = self.get_clock().now().nanoseconds * 1e-9
        return (now - stamp) * 1000.0 > limit

    def _prompt_set(self, mode: str, external: PromptArray | None) -> tuple[PromptSet | None, bool]:
        if mode == "auto" or external is None:
            return None, mode != "external"
        points, boxes, classes = conversions.prompts_from_msg(external)
        return PromptSet(points, boxes, classes), mode == "hybrid"

    def _segment_and_publish(
        self, camera: CameraIO, msg, rgb: np.ndarray, start: float, conversion_ms: float
    ) -> None:
        external = self.external
        with self.model_lock:
            cfg, pipeline = self.cfg, self.pipeline  # one consistent config for this frame
            if pipeline is None:
                raise RuntimeError("the model was released")
            prompts, auto = self._prompt_set(cfg.prompts_mode, external)
            frame = pipeline.encode(rgb, need_maps=pipeline.needs_prompt_maps(auto))
            if prompts is None and not auto:
                result = pipeline.segment(frame, PromptSet())  # external mode, no prompts yet
            else:
                result = pipeline.segment(frame, prompts, auto=auto)
            task_maps = {}
            if cfg.tasks:
                started = time.perf_counter()
                task_maps = pipeline.backend.predict_tasks(frame.tensor, cfg.tasks)
                result.timings_ms["tasks"] = (time.perf_counter() - started) * 1000.0
        camera.cache = (frame, msg.header)
        extras = spatial.apply(camera, cfg.tracking, cfg.depth, result, stamp_ns(msg.header))
        built = time.perf_counter()
        counters = camera.counters
        timing = {"conversion": conversion_ms, **extras.timings_ms}
        out = conversions.segmentation_to_msg(
            result,
            msg.header,
            self.model_id,
            PROMPT_SOURCE[cfg.prompts_mode],
            timing,
            counters.dropped_since_output,
            external if prompts is not None else None,
            depth_stamp_ns=extras.depth_stamp_ns,
        )
        camera.publish_maps(result, task_maps, frame.geometry, msg.header, extras.points)
        out.timing.message_ms = (time.perf_counter() - built) * 1000.0
        out.timing.total_ms = (time.perf_counter() - start) * 1000.0
        camera.masks_pub.publish(out)
        counters.dropped_since_output = 0
        counters.processed += 1
        counters.done_times.append(time.monotonic())
        counters.stage_ms.append({**result.timings_ms, **timing, "total": out.timing.total_ms})
        if result.active_rank is not None:
            counters.active_ranks.append(result.active_rank)
        if camera.overlay_due(cfg.output.overlay_max_rate_hz):
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
        prompts = None
        if request.prompts.prompts:
            prompts = PromptSet(*conversions.prompts_from_msg(request.prompts))
        start = time.perf_counter()
        with self.model_lock:
            pipeline = self.pipeline
            if pipeline is None:
                raise RuntimeError("node is not configured")
            if request.image.width and request.image.height:
                rgb = image_input.image_to_rgb(request.image)
                need_maps = pipeline.needs_prompt_maps(auto=prompts is None)
                frame, header = pipeline.encode(rgb, need_maps=need_maps), request.image.header
            else:
                frame, header = self._cached(request.camera)
            result = pipeline.segment(frame, prompts)
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
        with self._entities_lock:
            if self.diag_pub is not None:  # None once released
                self.diag_pub.publish(
                    diagnostics_message(self, self.cameras, self.model_id, self.active)
                )
