"""Depth images, CameraInfo and the point cloud to and from messages; 3D fields in MaskInstance."""

from __future__ import annotations

import math

import depth_scene as scene
import numpy as np
import pytest

pytest.importorskip("rclpy")
pytest.importorskip("ranksam_msgs")

from sensor_msgs.msg import CameraInfo, Image  # noqa: E402
from std_msgs.msg import Header  # noqa: E402

from ranksam_ros.pipeline.depth3d import InstancePoints, Intrinsics, IntrinsicsError  # noqa: E402
from ranksam_ros.ros.conversions import segmentation_to_msg  # noqa: E402
from ranksam_ros.ros.depth_conversions import (  # noqa: E402
    camera_info,
    depth_image,
    depth_to_metres,
    intrinsics_from_camera_info,
    point_cloud,
    read_point_cloud,
)
from ranksam_ros.ros.image_input import BadImageError  # noqa: E402

HEADER = Header(frame_id="cam")


def test_16uc1_is_millimetres_with_zero_as_no_depth():
    msg = depth_image(scene.depth_metres(), HEADER, "16UC1")
    assert msg.encoding == "16UC1" and msg.step == 2 * scene.WIDTH
    raw = np.frombuffer(bytes(msg.data), "<u2").reshape(scene.HEIGHT, scene.WIDTH)
    np.testing.assert_array_equal(raw, scene.depth_millimetres())
    back = depth_to_metres(msg)
    np.testing.assert_array_equal(np.isnan(back), np.isnan(scene.depth_metres()))
    np.testing.assert_allclose(back[~np.isnan(back)], scene.depth_metres()[~np.isnan(back)])


def test_32fc1_big_endian_and_padded_rows():
    depth = np.arange(12, dtype=np.float32).reshape(3, 4) / 4
    padded = np.zeros((3, 6), ">f4")
    padded[:, :4] = depth
    msg = Image(height=3, width=4, encoding="32FC1", is_bigendian=1, step=24)
    msg.data = padded.tobytes()
    np.testing.assert_array_equal(depth_to_metres(msg), depth)


@pytest.mark.parametrize(
    "msg, reason",
    [
        (Image(height=2, width=2, encoding="mono8", step=2, data=bytes(4)), "depth encoding"),
        (Image(height=2, width=2, encoding="16UC1", step=3, data=bytes(6)), r"step 3 < width\*2"),
        (Image(height=2, width=2, encoding="32FC1", step=8, data=bytes(10)), "truncated"),
        (Image(height=0, width=2, encoding="16UC1", step=4, data=b""), "zero dimension"),
    ],
)
def test_bad_depth_images_say_why(msg, reason):
    with pytest.raises(BadImageError, match=reason):
        depth_to_metres(msg)


def test_camera_info_round_trip_and_refusals():
    k = Intrinsics.from_k(scene.K, scene.WIDTH, scene.HEIGHT)
    assert intrinsics_from_camera_info(camera_info(k, HEADER)) == k
    with pytest.raises(IntrinsicsError, match="focal"):
        intrinsics_from_camera_info(CameraInfo())  # all zeros: what an unset driver sends
    binned = camera_info(k, HEADER)
    binned.binning_x = 2
    with pytest.raises(IntrinsicsError, match="binning"):
        intrinsics_from_camera_info(binned)


def test_point_cloud_layout_and_values():
    points = InstancePoints(
        np.array([[0.5, -1.0, 2.0], [1.5, 0.25, 4.0]], np.float32),
        np.array([1, 7], np.uint16),
        np.array([-1, 8], np.int16),
        np.array([0, 123456], np.uint32),
    )
    msg = point_cloud(points, HEADER)
    assert [f.name for f in msg.fields] == ["x", "y", "z", "instance_id", "class_id", "track_id"]
    assert (msg.width, msg.height, msg.point_step, msg.row_step) == (2, 1, 20, 40)
    cloud = read_point_cloud(msg)
    np.testing.assert_array_equal(np.stack([cloud[a] for a in "xyz"], 1), points.xyz)
    assert cloud["instance_id"].tolist() == [1, 7] and cloud["class_id"].tolist() == [-1, 8]
    assert cloud["track_id"].tolist() == [0, 123456]


def test_mask_instances_carry_track_id_position_extent_and_valid_share(segmentation):
    first = segmentation.instances[0]
    first.track_id, first.position, first.extent = 42, (0.1, -0.2, 2.5), (0.6, 0.5, 0.1)
    first.depth_valid_ratio = 0.75
    msg = segmentation_to_msg(segmentation, HEADER, "m", 0, {"tracking": 0.5}, 0)
    head, other = msg.instances[0], msg.instances[1]
    assert head.track_id == 42 and head.depth_valid_ratio == pytest.approx(0.75)
    assert (head.position.x, head.position.y, head.position.z) == pytest.approx((0.1, -0.2, 2.5))
    assert (head.extent.x, head.extent.y, head.extent.z) == pytest.approx((0.6, 0.5, 0.1))
    assert other.track_id == 0 and math.isnan(other.position.z) and math.isnan(other.extent.x)
    assert msg.timing.tracking_ms == pytest.approx(0.5) and msg.depth_stamp.sec == 0
    stamped = segmentation_to_msg(segmentation, HEADER, "m", 0, {}, 0, depth_stamp_ns=3 * 10**9 + 5)
    assert (stamped.depth_stamp.sec, stamped.depth_stamp.nanosec) == (3, 5)
