"""Real DDS round trips: separate publisher and subscriber nodes exchanging our messages."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest

rclpy = pytest.importorskip("rclpy")
pytest.importorskip("ranksam_msgs.msg")

from builtin_interfaces.msg import Time  # noqa: E402
from ranksam_msgs.msg import SegmentationMasks  # noqa: E402
from rclpy.executors import SingleThreadedExecutor  # noqa: E402
from rclpy.node import Node  # noqa: E402
from rclpy.qos import QoSProfile, ReliabilityPolicy, qos_profile_sensor_data  # noqa: E402
from rclpy.serialization import deserialize_message, serialize_message  # noqa: E402
from sensor_msgs.msg import Image  # noqa: E402
from std_msgs.msg import Header  # noqa: E402

from ranksam_ros.ros.conversions import (  # noqa: E402
    label_image,
    msg_instance_mask,
    rgb_to_image,
    segmentation_to_msg,
)
from ranksam_ros.ros.image_input import image_to_rgb  # noqa: E402

pytestmark = pytest.mark.ros

TIMEOUT_S = 15.0


class _Inbox:
    """Collects messages per topic and wakes the test when one arrives."""

    def __init__(self) -> None:
        self.messages: dict[str, list] = {}
        self.arrived = threading.Condition()

    def callback(self, topic: str):
        def store(msg) -> None:
            with self.arrived:
                self.messages.setdefault(topic, []).append(msg)
                self.arrived.notify_all()

        return store

    def first(self, topic: str, publish, deadline: float):
        """Publish (again every 0.2 s) until ``topic`` has a message, then return it."""
        with self.arrived:
            while not self.messages.get(topic):
                if time.monotonic() > deadline:
                    raise AssertionError(f"nothing received on {topic} within {TIMEOUT_S} s")
                publish()
                self.arrived.wait(0.2)
            return self.messages[topic][0]


@pytest.fixture
def nodes(ros_context):
    """A publisher node and a subscriber node spun by an executor in a background thread."""
    publisher = Node("ranksam_test_publisher", context=ros_context)
    subscriber = Node("ranksam_test_subscriber", context=ros_context)
    executor = SingleThreadedExecutor(context=ros_context)
    executor.add_node(subscriber)
    executor.add_node(publisher)
    spinner = threading.Thread(target=executor.spin, daemon=True)
    spinner.start()
    yield publisher, subscriber
    # Order matters: an executor still spinning at rclpy shutdown aborts the process.
    executor.shutdown(timeout_sec=5.0)
    spinner.join(timeout=5.0)
    assert not spinner.is_alive()
    publisher.destroy_node()
    subscriber.destroy_node()


def _wait_for_match(publishers, deadline: float) -> None:
    while any(pub.get_subscription_count() == 0 for pub in publishers):
        assert time.monotonic() < deadline, "publishers and subscribers never matched"
        time.sleep(0.05)


def test_segmentation_masks_and_images_over_dds(nodes, segmentation):
    publisher, subscriber = nodes
    header = Header(stamp=Time(sec=1_700_000_123, nanosec=456_789_012), frame_id="cam_optical")
    rgb = np.random.default_rng(3).integers(0, 256, (60, 80, 3), dtype=np.uint8)
    segmentation.active_rank = 6.25  # NaN (no gated adapters) never compares equal
    for index, inst in enumerate(segmentation.instances):  # so does NaN 3D (no depth)
        inst.position, inst.extent = (0.5 * index, -1.0, 2.0 + index), (0.3, 0.2, 0.1)
        inst.track_id, inst.depth_valid_ratio = 100 + index, 0.5
    masks_msg = segmentation_to_msg(segmentation, header, "micro", 0, {"total": 12.5}, 4)
    image_msg = rgb_to_image(rgb, header)
    labels_msg = label_image(segmentation.instance_ids, header)

    reliable = QoSProfile(depth=2, reliability=ReliabilityPolicy.RELIABLE)
    inbox = _Inbox()
    subscriber.create_subscription(SegmentationMasks, "masks", inbox.callback("masks"), reliable)
    subscriber.create_subscription(Image, "image", inbox.callback("image"), qos_profile_sensor_data)
    subscriber.create_subscription(Image, "label_image", inbox.callback("labels"), reliable)
    masks_pub = publisher.create_publisher(SegmentationMasks, "masks", reliable)
    image_pub = publisher.create_publisher(Image, "image", qos_profile_sensor_data)
    labels_pub = publisher.create_publisher(Image, "label_image", reliable)

    deadline = time.monotonic() + TIMEOUT_S
    _wait_for_match([masks_pub, image_pub, labels_pub], deadline)
    got_masks = inbox.first("masks", lambda: masks_pub.publish(masks_msg), deadline)
    got_image = inbox.first("image", lambda: image_pub.publish(image_msg), deadline)
    got_labels = inbox.first("labels", lambda: labels_pub.publish(labels_msg), deadline)

    for got in (got_masks, got_image, got_labels):
        assert got.header.stamp.sec == 1_700_000_123
        assert got.header.stamp.nanosec == 456_789_012
        assert got.header.frame_id == "cam_optical"
    # float64 fields of the sent message come back rounded to float32: compare on the wire.
    sent = deserialize_message(serialize_message(masks_msg), SegmentationMasks)
    assert got_masks == sent
    assert got_masks.timing.total_ms == 12.5 and got_masks.frames_dropped == 4
    assert [i.track_id for i in got_masks.instances] == [100, 101, 102, 103, 104]
    assert got_masks.instances[2].position.z == 4.0
    for inst, expected in zip(got_masks.instances, segmentation.instances):
        decoded = msg_instance_mask(inst, got_masks.mask_height, got_masks.mask_width)
        np.testing.assert_array_equal(decoded, expected.mask)
    assert len(got_masks.instances) == len(segmentation.instances)
    np.testing.assert_array_equal(image_to_rgb(got_image), rgb)
    ids = np.frombuffer(got_labels.data, "<u2").reshape(60, 80)
    np.testing.assert_array_equal(ids, segmentation.instance_ids)
