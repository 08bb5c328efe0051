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
    wait_for,
)
from ranksam_msgs.msg import ClassList, SegmentationMasks  # noqa: E402
from ranksam_msgs.srv import SegmentImage  # noqa: E402
from rclpy.executors import MultiThreadedExecutor  # noqa: E402
from rclpy.lifecycle import TransitionCallbackReturn  # noqa: E402
from rclpy.node import Node  # noqa: E402
from rclpy.parameter import Parameter  # noqa: E402
from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy  # noqa: E402
from sensor_msgs.msg import CompressedImage, Image  # noqa: E402

from ranksam_ros.data.folder import read_rgb  # noqa: E402
from ranksam_ros.ros.conversions import msg_instance_mask  # noqa: E402


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
        [sys.executable, "-m", "ranksam_ros.ros.node", "--ros-args", "--params-file", str(params)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    peer = Node("remote_peer", context=ros_context)
    received: list = []
    peer.create_subscription(SegmentationMasks, "/ranksam/masks", received.append, 10)
    pub = peer.create_publisher(CompressedImage, "/image/compressed", 10)
    executor = MultiThreadedExecutor(context=ros_context)
    executor.add_node(peer)
    spinner = threading.Thread(target=executor.spin, daemon=True)
    spinner.start()
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
        node.wait(timeout=20)
        executor.shutdown()
        spinner.join(timeout=10)
        peer.destroy_node()


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
