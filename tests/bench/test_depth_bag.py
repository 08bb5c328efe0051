"""``ranksam make-bag --depth``: depth and camera_info topics, and their replay into the node."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
from PIL import Image as PILImage

pytest.importorskip("rosbags")

from ranksam_ros.bench import bag_writer, bags  # noqa: E402
from ranksam_ros.bench.depth_bag import CAMERA_INFO, pinhole_k  # noqa: E402
from ranksam_ros.bench.typestore import ranksam_typestore  # noqa: E402

FRAMES = Path(__file__).resolve().parents[2] / "ranksam_ros" / "assets" / "camvid_val"
IMAGES = sorted((FRAMES / "images").iterdir())
H, W = 360, 480
DEPTH_MM = 2500


def _depth_folder(root: Path, shape=(H, W)) -> Path:
    """Depth for every bundled frame: 2.5 m, a hole at the top left; PNG and .npy mixed."""
    folder = root / "depth"
    folder.mkdir()
    for index, image in enumerate(IMAGES):
        mm = np.full(shape, DEPTH_MM, np.uint16)
        mm[:40, :60] = 0
        if index % 2:
            np.save(folder / f"{image.stem}.npy", np.where(mm > 0, mm / 1000.0, np.nan))
        else:
            PILImage.fromarray(mm).save(folder / f"{image.stem}.png")
    return folder


@pytest.fixture(scope="module")
def depth_bag(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("depth-bag")
    out = root / "camvid_depth.mcap"
    bag_writer.make_bag(
        FRAMES / "images", out, 5.0, compressed=True, depth=_depth_folder(root), fov_deg=70.0
    )
    return out


def test_depth_and_camera_info_topics_with_the_frames_stamps(depth_bag):
    frames = bags.load_frames(depth_bag)  # the depth topic is not taken for the camera
    assert frames.topic == "/camera/image_raw/compressed"
    depth = bags.read_topic(depth_bag, "/camera/depth")
    info = bags.read_topic(depth_bag, "/camera/camera_info")
    assert np.array_equal(depth.stamp_ns, frames.stamp_ns)
    assert np.array_equal(info.stamp_ns, frames.stamp_ns) and info.msgtype == CAMERA_INFO
    store = ranksam_typestore()
    png = store.deserialize_cdr(depth.raw[0], depth.msgtype)
    npy = store.deserialize_cdr(depth.raw[1], depth.msgtype)
    assert (png.encoding, npy.encoding) == ("16UC1", "32FC1")
    mm = np.frombuffer(bytes(png.data), "<u2").reshape(H, W)
    metres = np.frombuffer(bytes(npy.data), "<f4").reshape(H, W)
    assert mm[100, 100] == DEPTH_MM and mm[0, 0] == 0
    assert metres[100, 100] == pytest.approx(2.5) and math.isnan(metres[0, 0])
    k = store.deserialize_cdr(info.raw[0], CAMERA_INFO).k
    np.testing.assert_allclose(k, pinhole_k(W, H, 70.0))
    assert k[0] == pytest.approx(240 / math.tan(math.radians(35)))
    companions = bags.load_companions(depth_bag, frames)
    assert sorted(c.node_topic for c in companions) == ["/camera_info", "/depth"]
    assert all(c.available() == len(frames) for c in companions)


def test_bad_depth_folders_fail_with_the_reason(tmp_path, run_cli):
    folder = _depth_folder(tmp_path)
    next(folder.iterdir()).unlink()
    args = ["make-bag", "--images", str(FRAMES / "images"), "--rate", "5"]
    done = run_cli(*args, "--out", str(tmp_path / "a.mcap"), "--depth", str(folder))
    assert done.returncode != 0 and "1 images have no depth (.png/.npy)" in done.stderr
    small = tmp_path / "small"
    small.mkdir()
    folder = _depth_folder(small, shape=(H // 2, W // 2))
    done = run_cli(*args, "--out", str(tmp_path / "b.mcap"), "--depth", str(folder))
    assert done.returncode != 0 and "is not aligned to its 480x360 image" in done.stderr
    assert not (tmp_path / "b.mcap").exists()  # nothing half-written is left


@pytest.mark.ros
def test_replay_feeds_depth_to_the_node(
    depth_bag, micro_model_dir, run_cli, eager_params, tmp_path
):
    """``ranksam bench`` publishes depth and camera_info with every frame: the node pairs them."""
    pytest.importorskip("rclpy")
    pytest.importorskip("ranksam_msgs")
    pytest.importorskip("psutil")
    from ranksam_ros.bench.bags import open_bag

    record = tmp_path / "record.mcap"
    args = ["bench", "--bag", str(depth_bag), "--rates", "4", "--duration", "2.5", "--runs", "1"]
    args += ["--record", str(record), "--startup-timeout", "120"]
    for setting in (f"model={micro_model_dir}", "adapter=none", "depth.enabled=true",
                    *eager_params):  # fmt: skip
        args += ["--set", setting]
    done = run_cli(*args)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "replaying 10 sensor_msgs/msg/Image on /depth" in done.stdout
    store = ranksam_typestore()
    with open_bag(record) as reader:
        masks = [
            store.deserialize_cdr(raw, c.msgtype)
            for c, _, raw in reader.messages()
            if c.msgtype == "ranksam_msgs/msg/SegmentationMasks"
        ]
    stamp = lambda t: (t.sec, t.nanosec)  # noqa: E731
    paired = [m for m in masks if stamp(m.depth_stamp) == stamp(m.header.stamp)]
    assert paired, [(m.header.stamp, m.depth_stamp) for m in masks]
    measured = [i for m in paired for i in m.instances if i.depth_valid_ratio > 0.5]
    assert measured and all(i.position.z == pytest.approx(2.5) for i in measured)
