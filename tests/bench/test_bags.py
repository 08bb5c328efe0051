"""``ranksam make-bag`` round trips and the clear errors of the bag reader."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("rosbags")

from ranksam_ros.bench import bag_writer, bags, depth_bag  # noqa: E402
from ranksam_ros.bench.offline import decode_label, decode_rgb  # noqa: E402
from ranksam_ros.bench.typestore import ranksam_typestore  # noqa: E402
from ranksam_ros.cli import main  # noqa: E402
from ranksam_ros.data.folder import read_label, read_rgb  # noqa: E402

FRAMES = Path(__file__).resolve().parents[2] / "ranksam_ros" / "assets" / "camvid_val"
IMAGES = sorted((FRAMES / "images").iterdir())


@pytest.mark.parametrize("storage", ["mcap", "sqlite3"])
@pytest.mark.parametrize("compressed", [False, True], ids=["raw", "compressed"])
def test_make_bag_round_trip(tmp_path, storage, compressed):
    out = tmp_path / "bag"
    summary = bag_writer.make_bag(
        FRAMES / "images",
        out,
        4.0,
        labels=FRAMES / "labels",
        compressed=compressed,
        storage=storage,
        frame_id="cam0",
        start_ns=1_000_000_000,
    )
    assert summary["frames"] == len(IMAGES) and summary["storage"] == storage
    frames = bags.load_frames(out)  # the label topic is not mistaken for the camera
    assert frames.topic == "/camera/image_raw" + ("/compressed" if compressed else "")
    assert frames.msgtype == (bags.COMPRESSED if compressed else bags.IMAGE)
    expected = 1_000_000_000 + np.arange(len(IMAGES)) * 250_000_000
    assert np.array_equal(frames.stamp_ns, expected) and np.array_equal(frames.log_ns, expected)
    assert frames.stamp_report() == {"header_stamps": "present", "zero_stamps": 0, "unique": True}
    rgb = decode_rgb(frames.raw[3], frames.msgtype)
    original = read_rgb(IMAGES[3])
    if compressed:  # JPEG: close, not equal
        assert np.abs(rgb.astype(int) - original).mean() < 6
    else:
        assert np.array_equal(rgb, original)
    header = ranksam_typestore().deserialize_cdr(frames.raw[0], frames.msgtype).header
    assert header.frame_id == "cam0"
    labels = bags.read_topic(out, "/camera/labels")
    assert np.array_equal(labels.stamp_ns, frames.stamp_ns)
    truth = read_label(FRAMES / "labels" / f"{IMAGES[3].stem}.png")
    assert np.array_equal(decode_label(labels.raw[3]), truth)


@pytest.mark.parametrize("suffix", [".mcap", ".db3"])
def test_single_file_bags_via_the_cli(tmp_path, suffix, capsys):
    out = tmp_path / f"camera{suffix}"
    args = ["make-bag", "--images", str(FRAMES / "images"), "--out", str(out), "--rate", "10"]
    assert main([*args, "--compressed", "--topic", "/front/image/compressed"]) == 0
    assert out.is_file() and "10 msgs" in capsys.readouterr().out
    frames = bags.load_frames(out)
    assert frames.topic == "/front/image/compressed" and len(frames) == len(IMAGES)
    assert main(args) == 2  # exists: refused without --overwrite
    assert "--overwrite" in capsys.readouterr().err
    assert main([*args, "--overwrite"]) == 0
    assert bags.load_frames(out).msgtype == bags.IMAGE


def test_missing_and_corrupt_bags_are_reported(tmp_path):
    with pytest.raises(FileNotFoundError, match="bag not found"):
        bags.load_frames(tmp_path / "nothing.mcap")
    corrupt = tmp_path / "corrupt.mcap"
    corrupt.write_bytes(b"\x89MCAP0\r\n" + bytes(range(256)) * 8)
    with pytest.raises(bags.BagError, match="not a readable rosbag2 bag"):
        bags.load_frames(corrupt)
    folder = tmp_path / "folder"
    folder.mkdir()
    with pytest.raises(bags.BagError, match="not a readable rosbag2 bag"):
        bags.load_frames(folder)
    good = tmp_path / "good.mcap"
    bag_writer.make_bag(FRAMES / "images", good, 5.0, compressed=True)
    truncated = tmp_path / "truncated.mcap"
    truncated.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    with pytest.raises(bags.BagError):
        bags.load_frames(truncated)


def _bag_with(tmp_path, topics: dict[str, str], stamp_sec: int = 0):
    """A bag with one message per topic (String or Image with the given stamp)."""
    store = ranksam_typestore()
    out = tmp_path / "odd.mcap"
    with bag_writer.bag_writer(out) as writer:
        for topic, msgtype in topics.items():
            connection = writer.add_connection(topic, msgtype, typestore=store)
            if msgtype == "std_msgs/msg/String":
                msg = store.types[msgtype](data="hello")
            else:
                header = bag_writer._header(store, stamp_sec * 1_000_000_000, "cam")
                msg = depth_bag.image_message(store, header, np.zeros((4, 6, 3), np.uint8), "rgb8")
            for index in range(3):
                writer.write(connection, index + 1, store.serialize_cdr(msg, msgtype))
    return out


def test_unknown_topic_lists_the_available_ones(labelled_bag):
    with pytest.raises(bags.BagError) as error:
        bags.load_frames(labelled_bag, "/camera/nope")
    text = str(error.value)
    assert "/camera/nope" in text
    assert "/camera/image_raw/compressed (sensor_msgs/msg/CompressedImage, 10 msgs)" in text
    assert "/camera/labels (sensor_msgs/msg/Image, 10 msgs)" in text


def test_unsupported_type_and_ambiguous_topics(tmp_path):
    out = _bag_with(tmp_path, {"/chatter": "std_msgs/msg/String"})
    with pytest.raises(bags.BagError, match="std_msgs/msg/String, which the benchmark cannot"):
        bags.load_frames(out, "/chatter")
    with pytest.raises(bags.BagError, match="no image topic; pass --topic"):
        bags.load_frames(out)
    (out).unlink()
    out = _bag_with(tmp_path, {"/a/image": bags.IMAGE, "/b/image": bags.IMAGE})
    with pytest.raises(bags.BagError, match="several image topics"):
        bags.load_frames(out)
    assert len(bags.load_frames(out, "/b/image")) == 3


def test_a_bag_without_stamps_is_flagged(tmp_path):
    frames = bags.load_frames(_bag_with(tmp_path, {"/cam/image": bags.IMAGE}))
    assert frames.stamp_report() == {"header_stamps": "missing", "zero_stamps": 3, "unique": False}
