"""Tracking and 3D in the node over real DDS: known depth scenes, bad depth input, track ids."""

from __future__ import annotations

import math
import os
import subprocess
import sys
import threading
import time

import depth_scene as scene
import numpy as np
import pytest

rclpy = pytest.importorskip("rclpy")
pytest.importorskip("ranksam_msgs")

from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus  # noqa: E402
from node_harness import ROOT, _frame, wait_for  # noqa: E402
from ranksam_msgs.msg import Prompt, PromptArray, SegmentationMasks  # noqa: E402
from rclpy.node import Node  # noqa: E402
from rclpy.parameter import Parameter  # noqa: E402
from sensor_msgs.msg import CameraInfo, Image, PointCloud2  # noqa: E402
from std_msgs.msg import Header  # noqa: E402

from ranksam_ros.pipeline.depth3d import Intrinsics  # noqa: E402
from ranksam_ros.ros.conversions import rgb_to_image  # noqa: E402
from ranksam_ros.ros.depth_conversions import (  # noqa: E402
    camera_info,
    depth_image,
    read_point_cloud,
)
from ranksam_ros.ros.executor import SpinningExecutor  # noqa: E402

K = Intrinsics.from_k(scene.K, scene.WIDTH, scene.HEIGHT)
# Masks are exactly the prompt boxes: every logit is above the cut, clipped to the box.
EXACT_BOXES = (
    "    prompts_mode: external\n"
    "    pipeline:\n      box_mask_threshold: -1000.0\n      min_area: 0\n"
    "      clip_to_box: true\n"
)


@pytest.fixture(scope="module")
def confident_model_dir(tmp_path_factory, make_micro_model):
    """The micro model with an IoU head that always says 0.9, so no mask is scored away."""
    import torch
    from node_harness import make_model_dir

    def confident():
        model = make_micro_model()
        last = model.sam.mask_decoder.iou_prediction_head.layers[-1]
        with torch.no_grad():
            last.weight.zero_()
            last.bias.fill_(0.9)
        return model

    return make_model_dir(tmp_path_factory, confident)


def _header(sec: int, nanosec: int = 0) -> Header:
    header = Header(frame_id="camera_color_optical_frame")
    header.stamp.sec, header.stamp.nanosec = sec, nanosec
    return header


def _box_prompts(*boxes) -> PromptArray:
    prompts = []
    for index, box in enumerate(boxes):
        prompt = Prompt(type=Prompt.BOX, prompt_id=f"p{index}", class_id=-1, score=1.0)
        prompt.box = np.asarray(box, np.float32)
        prompts.append(prompt)
    return PromptArray(prompts=prompts)


class _Peer:
    """Publishers of colour, depth, camera_info and prompts; listeners of masks and points."""

    def __init__(self, context, prefix: str = "/ranksam") -> None:
        self.node = Node("scene_peer", context=context)
        self.masks: list = []
        self.points: list = []
        self.node.create_subscription(SegmentationMasks, f"{prefix}/masks", self.masks.append, 10)
        self.node.create_subscription(PointCloud2, f"{prefix}/points", self.points.append, 10)
        self.image = self.node.create_publisher(Image, "/image", 10)
        self.depth = self.node.create_publisher(Image, "/depth", 10)
        self.info = self.node.create_publisher(CameraInfo, "/camera_info", 10)
        self.prompts = self.node.create_publisher(PromptArray, f"{prefix}/prompts", 5)
        self.executor = SpinningExecutor(2, context=context, name="scene-peer")
        self.executor.add_node(self.node)
        self.executor.start()
        self.rgb = np.full((scene.HEIGHT, scene.WIDTH, 3), 90, np.uint8)

    def send(self, sec: int, depth: np.ndarray | None, encoding: str = "16UC1") -> None:
        """camera_info and depth first (as a driver would, same stamp), then the colour frame."""
        header = _header(sec)
        self.info.publish(camera_info(K, header))
        if depth is not None:
            self.depth.publish(depth_image(depth, header, encoding))
        self.image.publish(rgb_to_image(self.rgb, header))

    def until(self, predicate, sec: int, depth, timeout: float = 60.0) -> int:
        """Send frames (new stamps from ``sec``) until ``predicate(masks)``; the next stamp."""
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            self.send(sec, depth)
            sec += 1
            if wait_for(lambda: predicate(self.masks), timeout=1.0):
                return sec
        raise AssertionError(f"no such output within {timeout} s ({len(self.masks)} outputs)")

    def close(self) -> None:
        self.executor.stop()
        self.node.destroy_node()


def _complete(msg: SegmentationMasks) -> bool:
    """All three prompts decoded and the frame paired with its own depth image."""
    return len(msg.instances) == 3 and msg.depth_stamp == msg.header.stamp


def _by_prompt(msg: SegmentationMasks) -> dict:
    return {inst.prompt.prompt_id: inst for inst in msg.instances}


def _check(inst, box, z) -> None:
    want = scene.expected(box, z)
    got = (inst.position.x, inst.position.y, inst.position.z)
    np.testing.assert_allclose(got, want.position, atol=0.02)  # within 2 cm
    assert inst.extent.x == pytest.approx(want.extent[0], rel=0.05)  # within 5%
    assert inst.extent.y == pytest.approx(want.extent[1], rel=0.05)
    assert abs(inst.extent.z) < 0.01 and inst.depth_valid_ratio == pytest.approx(1.0)


def test_3d_of_a_known_scene_across_processes(ros_context, confident_model_dir, tmp_path):
    """The node (console entry, own process) measures a box at 2 m and a wall at 4 m."""
    params = tmp_path / "params.yaml"
    params.write_text(
        "/**:\n  ros__parameters:\n"
        f"    model: {confident_model_dir}\n    adapter: none\n    threads: 1\n"
        + EXACT_BOXES
        + "    depth:\n      enabled: true\n      points_stride: 2\n"
    )
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    node = subprocess.Popen(
        [sys.executable, "-m", "ranksam_ros.ros.main", "--ros-args", "--params-file", str(params)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    peer = _Peer(ros_context)
    try:
        # The box prompt spills 2 px onto the wall all round; the hole has no depth at all.
        prompts = _box_prompts(scene.grow(scene.BOX, 2), scene.WALL, scene.HOLE)
        assert wait_for(lambda: peer.prompts.get_subscription_count() > 0, timeout=60)
        peer.prompts.publish(prompts)  # reliable: kept until the node has it
        depth = scene.depth_metres()  # sent as 16UC1: millimetres, 0 in the hole
        # Until discovery settles, a frame may come out before its prompts or depth did.
        sec = peer.until(lambda masks: masks and _complete(masks[-1]), 100, depth)
        first = peer.masks[-1]
        sec = peer.until(lambda masks: masks[-1] is not first and _complete(masks[-1]), sec, depth)
        second = peer.masks[-1]
        assert wait_for(lambda: peer.points, timeout=10)
    finally:
        node.terminate()
        output, _ = node.communicate(timeout=30)
        peer.close()
    assert node.returncode == 0, output
    assert "Traceback" not in output, output
    for out in (first, second):
        instances = _by_prompt(out)
        assert out.depth_stamp == out.header.stamp  # paired with its own depth image
        _check(instances["p0"], scene.BOX, scene.BOX_Z)
        _check(instances["p1"], scene.WALL, scene.WALL_Z)
        hole = instances["p2"]
        assert math.isnan(hole.position.z) and math.isnan(hole.extent.x)
        assert hole.depth_valid_ratio == 0.0
    # Same objects, same track ids; three distinct ids.
    ids = {k: v.track_id for k, v in _by_prompt(first).items()}
    assert ids == {k: v.track_id for k, v in _by_prompt(second).items()}
    assert len(set(ids.values())) == 3 and 0 not in ids.values()
    cloud = read_point_cloud(peer.points[-1])
    assert peer.points[-1].header.frame_id == "camera_color_optical_frame"
    by_instance = {inst.instance_id: inst for inst in second.instances}
    for instance_id in np.unique(cloud["instance_id"]):
        rows = cloud[cloud["instance_id"] == instance_id]
        inst = by_instance[int(instance_id)]
        assert inst.prompt.prompt_id in ("p0", "p1")  # the hole has no valid depth: no points
        assert np.all(rows["track_id"] == inst.track_id)
        assert np.median(rows["z"]) == pytest.approx(inst.position.z, abs=0.01)


def _diag_values(diagnostics: list) -> dict:
    """Key -> value of the newest status."""
    if not diagnostics or not diagnostics[-1].status:
        return {}
    return {kv.key: kv.value for kv in diagnostics[-1].status[0].values}


def _until_stamp(pub, rgb: np.ndarray, masks: list, sec: int) -> SegmentationMasks:
    """Publish frame ``sec`` until its output arrives; returns that output."""
    msg = rgb_to_image(rgb, _header(sec))
    end = time.monotonic() + 30
    while time.monotonic() < end:
        pub.publish(msg)
        if wait_for(lambda: any(m.header.stamp.sec == sec for m in masks), timeout=1.0):
            return next(m for m in masks if m.header.stamp.sec == sec)
    raise AssertionError(f"no output for frame {sec}")


def test_bad_depth_input_is_counted_and_colour_output_goes_on(harness_factory):
    h = harness_factory("depth.enabled=true", "depth.timeout_s=0.5", "depth.wait_ms=0.0")
    masks = h.listen(SegmentationMasks, "/ranksam/masks")
    diagnostics = h.listen(DiagnosticArray, "/diagnostics")
    info_pub = h.peer.create_publisher(CameraInfo, "/camera_info", 10)
    depth_pub = h.peer.create_publisher(Image, "/depth", 10)
    image_pub = h.peer.create_publisher(Image, "/image", 10)
    depth = h.node.cameras[0].depth.counters
    publishers = (info_pub, depth_pub, image_pub)
    assert wait_for(lambda: all(p.get_subscription_count() for p in publishers))
    rgb, _ = _frame(0, sec=1)
    height, width = rgb.shape[:2]
    good_k = Intrinsics(300.0, 300.0, width / 2, height / 2, width, height)
    # 1. CameraInfo with a zero focal length.
    info_pub.publish(camera_info(Intrinsics(0.0, 300.0, 240.0, 180.0), _header(1)))
    assert wait_for(lambda: depth.bad_info == 1, timeout=10)
    # 2. A depth image in an encoding that is not depth.
    depth_pub.publish(Image(height=2, width=2, encoding="rgb8", step=6, data=bytes(12)))
    assert wait_for(lambda: depth.bad_depth == 1, timeout=10)
    assert "unsupported depth encoding 'rgb8'" in depth.last_error
    # 3. Depth of another size than the colour frame: refused when paired, the frame goes out.
    info_pub.publish(camera_info(good_k, _header(2)))
    small = np.full((height // 2, width // 2), 3.0, np.float32)
    depth_pub.publish(depth_image(small, _header(2), "32FC1"))
    assert wait_for(lambda: depth.received == 2 and depth.info_received == 2, timeout=10)
    out = _until_stamp(image_pub, rgb, masks, 2)
    assert depth.bad_depth >= 2 and "not the colour frame's 480x360" in depth.last_error
    assert out.depth_stamp.sec == 0 and out.instances
    assert all(math.isnan(i.position.z) and i.depth_valid_ratio == 0 for i in out.instances)
    # 4. A good depth image: 3D comes back.
    depth_pub.publish(depth_image(np.full((height, width), 3.0, np.float32), _header(3)))
    assert wait_for(lambda: depth.received == 3, timeout=10)
    out = _until_stamp(image_pub, rgb, masks, 3)
    large = [i for i in out.instances if i.area >= 400]
    assert out.depth_stamp.sec == 3 and large
    assert all(i.position.z == pytest.approx(3.0) and i.depth_valid_ratio == 1 for i in large)
    # 5. The depth stream stops: colour frames keep coming out, without 3D.
    without = depth.without_depth
    for sec in (4, 5, 6):
        assert _until_stamp(image_pub, rgb, masks, sec).depth_stamp.sec == 0
    assert depth.without_depth >= without + 3
    time.sleep(0.6)  # past depth.timeout_s: diagnostics warn that depth stopped

    def reported() -> bool:
        values = _diag_values(diagnostics)
        if not values:
            return False
        status = diagnostics[-1].status[0]
        return (
            values.get("depth_bad_input") == str(depth.bad_depth)
            and values.get("camera_info_bad") == "1"
            and values.get("frames_without_depth") == str(depth.without_depth)
            and status.level == DiagnosticStatus.WARN
            and "no depth image for" in status.message
        )

    assert wait_for(reported, timeout=10), _diag_values(diagnostics)
    assert h.node.active and h.node.cameras[0].counters.errors == 0


def test_track_ids_in_the_node_stay_and_switch_off(harness_factory):
    h = harness_factory()
    masks = h.listen(SegmentationMasks, "/ranksam/masks")
    pub = h.peer.create_publisher(Image, "/image", 10)
    rgb, _ = _frame(1, sec=0)
    first, second = (_until_stamp(pub, rgb, masks, sec) for sec in (10, 11))
    first_ids = [i.track_id for i in first.instances]
    assert first_ids and first_ids == [i.track_id for i in second.instances]  # same objects
    assert sorted(first_ids) == list(range(1, len(first_ids) + 1))
    assert second.timing.tracking_ms > 0
    assert h.node.set_parameters([Parameter("tracking.enabled", value=False)])[0].successful
    assert all(i.track_id == 0 for i in _until_stamp(pub, rgb, masks, 12).instances)
    assert h.node.set_parameters([Parameter("tracking.enabled", value=True)])[0].successful
    again = _until_stamp(pub, rgb, masks, 13)  # a fresh start: ids from 1 again
    assert sorted(i.track_id for i in again.instances) == sorted(first_ids)
    refused = h.node.set_parameters([Parameter("depth.enabled", value=True)])[0]
    assert not refused.successful and "applies at configure" in refused.reason


def test_pairing_waits_for_a_depth_image_still_on_its_way(harness_factory):
    h = harness_factory("depth.enabled=true", "depth.wait_ms=5000.0", "depth.slop_ms=10.0")
    depth_input, cfg = h.node.cameras[0].depth, h.node.cfg.depth
    depth_pub = h.peer.create_publisher(Image, "/depth", 10)
    info_pub = h.peer.create_publisher(CameraInfo, "/camera_info", 10)
    assert wait_for(
        lambda: depth_pub.get_subscription_count() and info_pub.get_subscription_count()
    )
    info_pub.publish(camera_info(K, _header(1)))
    depth_pub.publish(depth_image(scene.depth_metres(), _header(1)))
    assert wait_for(lambda: depth_input.counters.received == 1)
    late = threading.Timer(
        0.3, lambda: depth_pub.publish(depth_image(scene.depth_metres(), _header(2, 5_000_000)))
    )
    late.start()
    # Frame at 2 s: only the 1 s depth image is stored, its own (2.005 s) is sent 0.3 s later.
    found = depth_input.match(2 * 10**9, cfg)
    assert not isinstance(found, str), found  # without waiting this would be a reason string
    assert found[0].stamp_ns == 2 * 10**9 + 5_000_000 and found[1] == K
    # Frame at 1.5 s: a newer depth image is already there, so its own will never come.
    reason = depth_input.match(1_500_000_000, cfg)
    assert "no depth image within depth.slop_ms=10" in reason and "500.0 ms away" in reason
    late.join()
