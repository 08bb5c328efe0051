"""The lifecycle node over real DDS: in-process for behaviour, across processes for transport."""

from __future__ import annotations

import io
import os
import subprocess
import sys
import threading

import numpy as np
import pytest
from PIL import Image as PILImage

rclpy = pytest.importorskip("rclpy")
pytest.importorskip("ranksam_msgs")

from diagnostic_msgs.msg import DiagnosticArray  # noqa: E402
from node_harness import (  # noqa: E402
    FRAMES,
    ROOT,
    _frame,
    _publish_until,
    logged,
    wait_for,
)
from ranksam_msgs.msg import ClassList, SegmentationMasks  # noqa: E402
from ranksam_msgs.srv import SegmentImage  # noqa: E402
from rclpy.lifecycle import TransitionCallbackReturn  # noqa: E402
from rclpy.node import Node  # noqa: E402
from rclpy.parameter import Parameter  # noqa: E402
from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy  # noqa: E402
from sensor_msgs.msg import CompressedImage, Image  # noqa: E402

from ranksam_ros.data.folder import read_rgb  # noqa: E402
from ranksam_ros.ros.conversions import msg_instance_mask  # noqa: E402
from ranksam_ros.ros.executor import SpinningExecutor  # noqa: E402
from ranksam_ros.ros.main import run_autostart  # noqa: E402
from ranksam_ros.ros.node import RankSamNode  # noqa: E402


def test_frames_in_masks_out_with_source_stamps(harness_factory):
    h = harness_factory()
    masks = h.listen(SegmentationMasks, "/ranksam/masks")
    labels = h.listen(Image, "/ranksam/label_image")
    semantic = h.listen(Image, "/ranksam/semantic")
    pub = h.peer.create_publisher(Image, "/image", 10)
    rgb, msg = _frame(0, sec=42)
    assert _publish_until(pub, msg, masks, 1)
    out = masks[0]
    assert (out.header.stamp.sec, out.header.stamp.nanosec, out.header.frame_id) == (
        42,
        123,
        "camera_optical",
    )
    assert (out.source_width, out.source_height) == (480, 360) and out.instances
    assert wait_for(lambda: labels and semantic)
    assert (labels[0].width, labels[0].height, labels[0].encoding) == (480, 360, "mono16")
    assert semantic[0].encoding == "mono8" and labels[0].header.stamp.sec == 42
    # The RLE masks decode to exactly what the pipeline produces for this frame.
    expected = h.node.pipeline(rgb)
    assert len(expected.instances) == len(out.instances)
    for inst_msg, inst in zip(out.instances, expected.instances):
        assert np.array_equal(msg_instance_mask(inst_msg, 360, 480), inst.mask)
        assert inst_msg.class_name == inst.class_name and inst_msg.instance_id == inst.instance_id
    assert out.timing.total_ms > 0 and out.timing.encoder_ms > 0 and out.prompts_decoded > 0


def test_flip_tta_is_a_configure_time_choice(harness_factory):
    h = harness_factory("tta=flip")
    assert h.node.pipeline.backend.info.model_id.endswith("+flip")
    masks = h.listen(SegmentationMasks, "/ranksam/masks")
    rgb, msg = _frame(1, sec=7)
    assert _publish_until(h.peer.create_publisher(Image, "/image", 10), msg, masks, 1)
    assert len(masks[0].instances) == len(h.node.pipeline(rgb).instances) > 0
    results = h.node.set_parameters([Parameter("tta", value="none")])
    assert not results[0].successful and "applies at configure" in results[0].reason


def test_labels_are_latched(harness_factory):
    h = harness_factory()
    latched = QoSProfile(
        depth=1, reliability=ReliabilityPolicy.RELIABLE, durability=DurabilityPolicy.TRANSIENT_LOCAL
    )
    classes = h.listen(ClassList, "/ranksam/labels", latched)
    assert wait_for(lambda: classes)
    assert classes[0].class_names[3] == "road" and classes[0].UNASSIGNED == 255


def test_bad_inputs_are_counted_and_valid_frames_still_processed(harness_factory):
    h = harness_factory()
    masks = h.listen(SegmentationMasks, "/ranksam/masks")
    diagnostics = h.listen(DiagnosticArray, "/diagnostics")
    pub = h.peer.create_publisher(Image, "/image", 10)
    _, good = _frame(1, sec=7)
    assert _publish_until(pub, good, masks, 1)
    bad = [
        Image(height=4, width=4, encoding="yuv422_weird", step=8, data=bytes(32)),
        Image(height=4, width=4, encoding="rgb8", step=5, data=bytes(20)),  # step < width * 3
        Image(height=4, width=4, encoding="rgb8", step=12, data=bytes(10)),  # truncated
        Image(height=0, width=0, encoding="rgb8", step=0, data=b""),
        Image(height=100000, width=100000, encoding="mono8", step=100000, data=bytes(16)),
    ]
    counters = h.node.cameras[0].counters
    for number, msg in enumerate(bad, start=1):
        pub.publish(msg)  # reliable and one at a time, so none is dropped as "not the newest"
        assert wait_for(lambda n=number: counters.bad_input == n, timeout=10), msg.encoding
    _, good = _frame(2, sec=8)
    count = len(masks)
    assert _publish_until(pub, good, masks, count + 1)
    assert masks[-1].header.stamp.sec == 8
    assert wait_for(
        lambda: any(
            kv.key == "bad_input" and kv.value == str(len(bad))
            for d in diagnostics
            for s in d.status
            for kv in s.values
        )
    )


def test_service_reuses_the_cached_frame(harness_factory):
    h = harness_factory()
    masks = h.listen(SegmentationMasks, "/ranksam/masks")
    client = h.peer.create_client(SegmentImage, "/ranksam/segment")
    assert client.wait_for_service(timeout_sec=10)
    empty = client.call_async(SegmentImage.Request())
    assert wait_for(empty.done) and not empty.result().success  # nothing cached yet
    assert "no frame yet" in empty.result().message
    pub = h.peer.create_publisher(Image, "/image", 10)
    _, msg = _frame(3, sec=99)
    assert _publish_until(pub, msg, masks, 1)
    future = client.call_async(SegmentImage.Request())
    assert wait_for(future.done)
    response = future.result()
    assert response.success and response.result.header.stamp.sec == 99
    assert response.result.prompt_source == SegmentationMasks.PROMPT_SERVICE
    assert len(response.result.instances) == len(masks[-1].instances)


def test_service_answers_a_malformed_image_with_the_reason(harness_factory):
    """A BadImageError is a ValueError: the service reports it instead of raising."""
    h = harness_factory()
    client = h.peer.create_client(SegmentImage, "/ranksam/segment")
    assert client.wait_for_service(timeout_sec=10)
    image = Image(height=4, width=4, encoding="yuv422_weird", step=8, data=bytes(32))
    future = client.call_async(SegmentImage.Request(image=image))
    assert wait_for(future.done)
    response = future.result()
    assert not response.success and "unsupported encoding 'yuv422_weird'" in response.message


def test_invalid_parameter_changes_are_rejected_with_a_reason(harness_factory):
    h = harness_factory()
    results = h.node.set_parameters([Parameter("pipeline.prompts.threshold", value=2.0)])
    assert not results[0].successful and "threshold" in results[0].reason
    results = h.node.set_parameters([Parameter("model", value="vit_b")])
    assert not results[0].successful and "applies at configure" in results[0].reason
    results = h.node.set_parameters([Parameter("pipeline.prompts.max_prompts", value=3)])
    assert results[0].successful and h.node.pipeline.cfg.prompts.max_prompts == 3


def test_configure_fails_cleanly_on_a_bad_model(harness_factory, tmp_path):
    h = harness_factory(f"model={tmp_path / 'missing'}", autostart=False)
    assert h.node.trigger_configure() == TransitionCallbackReturn.FAILURE
    assert h.node.pipeline is None


def test_two_cameras_share_one_model(harness_factory):
    h = harness_factory(["cameras", ["front", "rear"]])
    front = h.listen(SegmentationMasks, "/ranksam/front/masks")
    rear = h.listen(SegmentationMasks, "/ranksam/rear/masks")
    _, a = _frame(4, sec=1)
    _, b = _frame(5, sec=2)
    assert _publish_until(h.peer.create_publisher(Image, "/front/image", 10), a, front, 1)
    assert _publish_until(h.peer.create_publisher(Image, "/rear/image", 10), b, rear, 1)
    assert front[0].header.stamp.sec == 1 and rear[0].header.stamp.sec == 2
    assert len({id(c) for c in h.node.cameras}) == 2 and h.node.pipeline is not None


def test_compressed_input_across_processes_with_a_params_file(ros_context, model_dir, tmp_path):
    """A second process runs the node from the console entry with a params file."""
    params = tmp_path / "params.yaml"
    params.write_text(
        "/**:\n  ros__parameters:\n"
        f"    model: {model_dir}\n    adapter: none\n    threads: 1\n"
        "    input:\n      transport: compressed\n"
        "    pipeline:\n      max_instances: 2\n      min_area: 0\n"
        "      prompts:\n        threshold: 0.0\n        min_pred_iou: 0.0\n"
        "        max_prompts: 8\n"
    )
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    node = subprocess.Popen(
        [sys.executable, "-m", "ranksam_ros.ros.main", "--ros-args", "--params-file", str(params)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    peer = Node("remote_peer", context=ros_context)
    received: list = []
    peer.create_subscription(SegmentationMasks, "/ranksam/masks", received.append, 10)
    pub = peer.create_publisher(CompressedImage, "/image/compressed", 10)
    executor = SpinningExecutor(2, context=ros_context)
    executor.add_node(peer)
    executor.start()
    try:
        buffer = io.BytesIO()
        PILImage.fromarray(read_rgb(FRAMES[0])).save(buffer, format="JPEG", quality=90)
        msg = CompressedImage(format="jpeg", data=buffer.getvalue())
        msg.header.stamp.sec = 1234
        assert _publish_until(pub, msg, received, 1, timeout=60), (
            node.stdout.read() if node.poll() is not None else ""
        )
        out = received[0]
        assert out.header.stamp.sec == 1234 and (out.source_width, out.source_height) == (480, 360)
        assert 1 <= len(out.instances) <= 2  # pipeline.max_instances from the params file
    finally:
        node.terminate()
        output, _ = node.communicate(timeout=30)
        executor.stop()
        peer.destroy_node()
    # SIGTERM is a clean stop: lifecycle shutdown, callbacks finished, no stray errors.
    assert node.returncode == 0, output
    assert "never retrieved" not in output and "Traceback" not in output, output


def test_corrupt_compressed_frames_are_counted(harness_factory):
    h = harness_factory("input.transport=compressed")
    masks = h.listen(SegmentationMasks, "/ranksam/masks")
    pub = h.peer.create_publisher(CompressedImage, "/image/compressed", 10)
    counters = h.node.cameras[0].counters
    corrupt = [
        CompressedImage(format="jpeg", data=b"\xff\xd8\xff\xe0 not really a jpeg"),
        CompressedImage(format="png", data=b"\x89PNG\r\n\x1a\n" + bytes(40)),
        CompressedImage(format="jpeg", data=b""),
    ]
    assert wait_for(lambda: pub.get_subscription_count() > 0)
    for number, msg in enumerate(corrupt, start=1):
        pub.publish(msg)
        assert wait_for(lambda n=number: counters.bad_input == n, timeout=10)
    buffer = io.BytesIO()
    PILImage.fromarray(read_rgb(FRAMES[0])).save(buffer, format="PNG")
    good = CompressedImage(format="png", data=buffer.getvalue())
    good.header.stamp.sec = 5
    assert _publish_until(pub, good, masks, 1)
    assert masks[0].header.stamp.sec == 5 and h.node.active


def test_parameter_changes_wait_for_the_frame_being_segmented(harness_factory):
    h = harness_factory()
    before = h.node.pipeline.cfg
    change = [
        Parameter("pipeline.prompts.max_prompts", value=3),
        Parameter("pipeline.nms_iou", value=0.5),
    ]
    with h.node.model_lock:  # what the worker holds while it encodes and segments a frame
        setter = threading.Thread(target=h.node.set_parameters, args=(change,))
        setter.start()
        setter.join(timeout=1.0)
        assert setter.is_alive()  # the swap waits for the frame...
        assert h.node.pipeline.cfg is before and h.node.cfg.pipeline is before
    setter.join(timeout=20)
    after = h.node.pipeline.cfg  # ...then applies both settings at once, to both copies
    assert (after.prompts.max_prompts, after.nms_iou) == (3, 0.5)
    assert h.node.cfg.pipeline is after


class _RefusesActivation(RankSamNode):
    """A node whose activation fails, as it would if its subscriptions could not be made."""

    def on_activate(self, state):
        self.get_logger().error("activate failed: refused for the test")
        return TransitionCallbackReturn.FAILURE


def test_autostart_reports_a_failed_activate(harness_factory, capfd):
    h = harness_factory(autostart=False, node_class=_RefusesActivation)
    assert run_autostart(h.node) == 1
    assert logged(capfd.readouterr().err, "FATAL", "autostart: activate returned FAILURE")
    assert not h.node.active


def test_autostart_reports_a_failed_configure(harness_factory, tmp_path, capfd):
    h = harness_factory(f"model={tmp_path / 'missing'}", autostart=False)
    assert run_autostart(h.node) == 1
    console = capfd.readouterr().err
    assert logged(console, "ERROR", "configure failed:") and "missing" in console
    assert logged(console, "FATAL", "autostart: configure returned FAILURE")


def _node_process(*ros_args: str, timeout: float = 180) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    return subprocess.run(
        [sys.executable, "-m", "ranksam_ros.ros.main", "--ros-args", *ros_args],
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def test_a_misspelt_parameter_fails_the_console_node(model_dir):
    done = _node_process("-p", f"model:={model_dir}", "-p", "modle:=elsewhere")
    assert done.returncode == 1, done.stdout + done.stderr
    output = done.stdout + done.stderr
    assert "unknown parameter 'modle' (closest declared: 'model')" in output
    assert "autostart: configure returned FAILURE" in output and "Traceback" not in output


def test_unknown_parameters_fail_configure_naming_the_closest(harness_factory, capfd):
    h = harness_factory("modle=x", "pipeline.prompts.treshold=0.5", autostart=False)
    assert h.node.unknown_parameters == ["modle", "pipeline.prompts.treshold"]
    assert h.node.trigger_configure() == TransitionCallbackReturn.FAILURE
    expected = (
        "'modle' (closest declared: 'model'), 'pipeline.prompts.treshold' (closest declared: "
        "'pipeline.prompts.threshold')"
    )
    assert logged(
        capfd.readouterr().err, "ERROR", f"configure failed: unknown parameters {expected}"
    )
    assert h.node.pipeline is None


def _services(node) -> list[str]:
    return [service.srv_name for service in node.services]


def test_cleanup_destroys_every_entity_and_configure_works_again(harness_factory):
    h = harness_factory()
    node = h.node
    assert node.trigger_deactivate() == TransitionCallbackReturn.SUCCESS
    assert node.trigger_cleanup() == TransitionCallbackReturn.SUCCESS
    assert "~/segment" not in _services(node)
    assert not list(node.timers) and not list(node.subscriptions)
    published = [publisher.topic_name for publisher in node.publishers]
    assert "/diagnostics" not in published and "/ranksam/masks" not in published
    assert node.release_errors == 0 and node.pipeline is None
    assert node.trigger_configure() == TransitionCallbackReturn.SUCCESS
    assert node.trigger_activate() == TransitionCallbackReturn.SUCCESS
    assert _services(node).count("~/segment") == 1
    assert len(list(node.timers)) == 1


def test_an_entity_already_destroyed_is_tolerated(harness_factory):
    h = harness_factory()
    (timer,) = h.node.timers
    assert h.node.destroy_timer(timer)
    assert h.node.trigger_deactivate() == TransitionCallbackReturn.SUCCESS
    assert h.node.trigger_cleanup() == TransitionCallbackReturn.SUCCESS
    assert h.node.release_errors == 0


class _TimerRefusesOnce(RankSamNode):
    """rcl refusing once to destroy a timer (no real failure can be provoked on demand)."""

    refused = False

    def destroy_timer(self, timer) -> bool:
        if not self.refused:
            self.refused = True
            raise RuntimeError("rcl refused")
        return super().destroy_timer(timer)


def test_an_unexpected_destroy_error_is_logged_and_fails_cleanup(harness_factory, capfd):
    h = harness_factory(node_class=_TimerRefusesOnce)
    assert h.node.trigger_deactivate() == TransitionCallbackReturn.SUCCESS
    assert h.node.trigger_cleanup() == TransitionCallbackReturn.ERROR
    console = capfd.readouterr().err
    assert logged(console, "ERROR", "could not destroy timer: RuntimeError: rcl refused")
    assert logged(console, "ERROR", "cleanup: 1 entity could not be destroyed")
    assert h.node.release_errors == 1
    assert "~/segment" not in _services(h.node)  # the rest went


def test_onnxruntime_export_if_missing(harness_factory, tmp_path, monkeypatch, capfd):
    """A shipped model without a cached export: a clear failure, or an export on request."""
    pytest.importorskip("onnxruntime")
    monkeypatch.setenv("RANKSAM_CACHE", str(tmp_path / "cache"))
    h = harness_factory(
        "backend=onnxruntime", "model=camvid-tiny", "adapter=gated", autostart=False
    )
    assert h.node.trigger_configure() == TransitionCallbackReturn.FAILURE
    command = "ranksam export --model camvid-tiny --adapter gated"
    assert logged(capfd.readouterr().err, "ERROR", command)  # the command that fixes it
    assert h.node.set_parameters([Parameter("export_if_missing", value=True)])[0].successful
    assert h.node.trigger_configure() == TransitionCallbackReturn.SUCCESS
    assert logged(capfd.readouterr().err, "INFO", "exported camvid-tiny+gated to")
    assert h.node.pipeline.backend.info.model_id.endswith("@onnxruntime")
    assert (tmp_path / "cache" / "exports").is_dir()
