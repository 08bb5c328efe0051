"""A few hundred malformed messages: the node stays up, counts each, then serves valid frames."""

from __future__ import annotations

import pytest

pytest.importorskip("rclpy")
pytest.importorskip("ranksam_msgs")

from node_harness import _frame, _publish_until, wait_for  # noqa: E402
from ranksam_msgs.msg import SegmentationMasks  # noqa: E402
from rclpy.qos import QoSProfile, ReliabilityPolicy  # noqa: E402
from sensor_msgs.msg import CompressedImage, Image  # noqa: E402

from ranksam_ros.bench.fuzz import COMPRESSED_KINDS, RAW_KINDS, malformed_stream  # noqa: E402

RELIABLE = QoSProfile(depth=1000, reliability=ReliabilityPolicy.RELIABLE)


def test_raw_fuzz(harness_factory):
    h = harness_factory("input.reliability=reliable", "input.depth=100")
    masks = h.listen(SegmentationMasks, "/ranksam/masks")
    pub = h.peer.create_publisher(Image, "/image", RELIABLE)
    assert wait_for(lambda: pub.get_subscription_count() > 0)
    count = 50 * len(RAW_KINDS)
    counters = h.node.cameras[0].counters
    for sent, (_, msg) in enumerate(malformed_stream(count, compressed=False, seed=1), start=1):
        pub.publish(msg)
        if sent % 50 == 0:  # stay within the subscription's history depth
            assert wait_for(lambda n=sent: counters.received == n, timeout=30), counters
    assert counters.bad_input == count, counters
    assert counters.processed == 0 and counters.errors == 0
    _, good = _frame(0, sec=11)
    assert _publish_until(pub, good, masks, 1)
    assert masks[-1].header.stamp.sec == 11 and h.node.active


def test_compressed_fuzz(harness_factory):
    h = harness_factory(
        "input.transport=compressed", "input.reliability=reliable", "input.depth=100"
    )
    pub = h.peer.create_publisher(CompressedImage, "/image/compressed", RELIABLE)
    assert wait_for(lambda: pub.get_subscription_count() > 0)
    counters = h.node.cameras[0].counters
    sent = 0
    for _, msg in malformed_stream(5 * len(COMPRESSED_KINDS), compressed=True, seed=2):
        pub.publish(msg)
        sent += 1
        # Compressed frames are decoded by the worker: pace them so none is replaced unseen.
        assert wait_for(lambda n=sent: counters.bad_input + counters.dropped == n, timeout=10)
    assert counters.bad_input + counters.dropped == sent and counters.bad_input > 0
    assert counters.errors == 0 and h.node.active
