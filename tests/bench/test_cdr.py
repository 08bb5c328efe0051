"""Header stamps read and rewritten inside raw CDR buffers (rclpy's and rosbags' bytes)."""

from __future__ import annotations

import struct

import numpy as np
import pytest

from ranksam_ros.bench.cdr import CdrError, StampSequence, read_stamp, stamp_key, with_stamp


def _rclpy_image(sec: int, nanosec: int) -> bytes:
    pytest.importorskip("rclpy")
    from rclpy.serialization import serialize_message
    from sensor_msgs.msg import Image

    msg = Image(height=2, width=3, encoding="rgb8", step=9, data=bytes(range(18)))
    msg.header.stamp.sec, msg.header.stamp.nanosec = sec, nanosec
    msg.header.frame_id = "camera"
    return serialize_message(msg)


def test_rewritten_stamp_deserialises_with_rclpy_and_keeps_everything_else():
    pytest.importorskip("rclpy")
    from rclpy.serialization import deserialize_message
    from sensor_msgs.msg import Image

    raw = _rclpy_image(0, 0)  # a frame without a stamp
    assert read_stamp(raw) == (0, 0)
    out = with_stamp(raw, 1_700_000_123 * 10**9 + 456_789)
    assert len(out) == len(raw) and out[:4] == raw[:4] and out[12:] == raw[12:]
    msg = deserialize_message(out, Image)
    assert (msg.header.stamp.sec, msg.header.stamp.nanosec) == (1_700_000_123, 456_789)
    assert msg.header.frame_id == "camera" and bytes(msg.data) == bytes(range(18))
    assert stamp_key(out) == 1_700_000_123 * 10**9 + 456_789
    assert read_stamp(raw) == (0, 0)  # the input buffer is not modified


def test_segmentation_masks_stamp_is_at_the_same_bytes():
    pytest.importorskip("ranksam_msgs")
    from ranksam_msgs.msg import SegmentationMasks
    from rclpy.serialization import serialize_message

    msg = SegmentationMasks(model_id="m")
    msg.header.stamp.sec, msg.header.stamp.nanosec = 42, 7
    assert read_stamp(serialize_message(msg)) == (42, 7)


def test_rosbags_bytes_and_big_endian_buffers():
    pytest.importorskip("rosbags")
    from ranksam_ros.bench.typestore import ranksam_typestore

    store = ranksam_typestore()
    types = store.types
    header = types["std_msgs/msg/Header"](
        stamp=types["builtin_interfaces/msg/Time"](sec=5, nanosec=6), frame_id="x"
    )
    msg = types["sensor_msgs/msg/CompressedImage"](
        header=header, format="jpeg", data=np.zeros(0, np.uint8)
    )
    for little in (True, False):
        raw = bytes(
            store.serialize_cdr(msg, "sensor_msgs/msg/CompressedImage", little_endian=little)
        )
        assert read_stamp(raw) == (5, 6)
        out = with_stamp(raw, 9 * 10**9 + 10)
        back = store.deserialize_cdr(out, "sensor_msgs/msg/CompressedImage")
        assert (back.header.stamp.sec, back.header.stamp.nanosec, back.format) == (9, 10, "jpeg")


def test_bad_buffers_are_refused():
    with pytest.raises(CdrError, match="too short"):
        read_stamp(b"\x00\x01\x00\x00\x01")
    with pytest.raises(CdrError, match="unsupported CDR encapsulation 0003"):
        read_stamp(b"\x00\x03\x00\x00" + struct.pack("<iI", 1, 2))  # parameter-list CDR
    with pytest.raises(CdrError, match="does not fit"):
        with_stamp(b"\x00\x01\x00\x00" + bytes(8), 2**31 * 10**9)


def test_stamp_sequence_is_unique_and_increasing():
    seq = StampSequence()
    stamps = [seq.next(t) for t in (100, 100, 100, 99, 500)]
    assert stamps == [100, 101, 102, 103, 500]
