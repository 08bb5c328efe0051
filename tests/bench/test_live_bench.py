"""``ranksam bench`` live: the real node in its own process, frames over DDS, a recorded MCAP."""

from __future__ import annotations

import json

import pytest

pytest.importorskip("rclpy")
pytest.importorskip("ranksam_msgs")
pytest.importorskip("rosbags")
pytest.importorskip("psutil")

pytestmark = pytest.mark.ros

R2B_KEYS = (
    "MEAN_PLAYBACK_FRAME_RATE",
    "MEAN_FRAME_RATE",
    "NUM_FRAMES_SENT",
    "NUM_MISSED_FRAMES",
    "FIRST_SENT_RECEIVED_LATENCY",
    "LAST_SENT_RECEIVED_LATENCY",
    "MAX_JITTER",
    "MIN_JITTER",
    "MEAN_JITTER",
    "STD_DEV_JITTER",
)
OUR_KEYS = ("LATENCY_P50", "LATENCY_P95", "LATENCY_P99", "LATENCY_MAX", "LATENCY_MEAN")
NODE_KEYS = ("NODE_CPU_MEAN_PERCENT", "NODE_RSS_MAX_MB", "MODEL_TIME_P50", "NODE_OVERHEAD_P50")


@pytest.fixture(scope="module")
def live_run(tmp_path_factory, labelled_bag, micro_model_dir, run_cli, eager_params):
    """One short live benchmark at 4 Hz with JSON, plots and a recording."""
    out = tmp_path_factory.mktemp("live")
    args = ["bench", "--bag", str(labelled_bag), "--rates", "4", "--duration", "2.5"]
    args += ["--runs", "1", "--json", str(out / "bench.json"), "--plots", str(out / "plots")]
    args += ["--record", str(out / "record.mcap"), "--startup-timeout", "120"]
    for setting in (f"model={micro_model_dir}", "adapter=none", *eager_params):
        args += ["--set", setting]
    done = run_cli(*args)
    assert done.returncode == 0, done.stdout + done.stderr
    return out, done, json.loads((out / "bench.json").read_text())


def test_report_has_r2b_keys_and_matched_latencies(live_run):
    out, done, report = live_run
    for key in (*R2B_KEYS, *OUR_KEYS, *NODE_KEYS):
        assert key in report and key in report["4fps"], key
    assert report["NUM_FRAMES_RECEIVED"] > 0 and report["NUM_FRAMES_SENT"] >= 8
    assert 0 < report["LATENCY_P50"] <= report["LATENCY_P95"] <= report["LATENCY_MAX"]
    assert report["NUM_TIMING_SAMPLES"] == report["NUM_FRAMES_RECEIVED"]
    assert report["MODEL_TIME_P50"] < report["LATENCY_P50"]
    assert len(report["4fps"]["runs"]) == 1
    custom, meta = report["custom"], report["metadata"]
    assert custom["cold_start_s"] > custom["model_load_s"] > 0
    assert meta["model_id"] == "micro-model" and meta["backend"] == "torch"
    assert meta["message_type"] == "sensor_msgs/msg/CompressedImage"
    assert len(meta["bag_sha256"]) == 64 and meta["bag_size_bytes"] > 0
    assert meta["node_params"]["benchmark_mode"] is True
    assert meta["node_params"]["input.transport"] == "compressed"
    assert meta["stamps_rewritten"] and meta["mode"] == "looping" and meta["machine"]
    assert "p50 ms" in done.stdout  # the printed summary table


def test_latency_plots_are_written(live_run):
    out, _, report = live_run
    plots = sorted(p.name for p in (out / "plots").iterdir())
    assert plots == ["latency_hist_4hz.png", "latency_series_4hz.png"]
    assert all((out / "plots" / name).stat().st_size > 1000 for name in plots)
    assert len(report["custom"]["plots"]) == 2
    # RSS is kept per run in 10 s medians: none in a 2.5 s run, so no RSS plot either
    assert report["4fps"]["runs"][0]["rss_series_mb"] == []


def test_recording_reads_back_with_matching_stamps(live_run):
    from ranksam_ros.bench.bags import open_bag
    from ranksam_ros.bench.cdr import stamp_key
    from ranksam_ros.bench.typestore import ranksam_typestore

    out, _, report = live_run
    assert report["custom"]["record"]["verified"]
    store = ranksam_typestore()
    stamps: dict[str, list[int]] = {}
    masks = []
    with open_bag(out / "record.mcap") as reader:
        types = {c.topic: c.msgtype for c in reader.connections}
        for connection, _, raw in reader.messages():
            stamps.setdefault(connection.topic, []).append(stamp_key(raw))
            if connection.msgtype == "ranksam_msgs/msg/SegmentationMasks":
                masks.append(store.deserialize_cdr(raw, connection.msgtype))
    assert types["/ranksam/masks"] == "ranksam_msgs/msg/SegmentationMasks"
    assert types["/image/compressed"] == "sensor_msgs/msg/CompressedImage"
    assert masks and all(m.model_id == "micro-model" for m in masks)
    assert any(m.instances for m in masks) and masks[0].source_width == 480
    sent = set(stamps["/image/compressed"])
    assert set(stamps["/ranksam/masks"]) <= sent  # every output carries a replayed stamp
    assert set(stamps["/ranksam/label_image"]) <= sent
    assert len(set(stamps["/image/compressed"])) == len(stamps["/image/compressed"])  # unique


def test_a_node_that_fails_to_start_is_reported_with_its_log(labelled_bag, tmp_path, run_cli):
    missing = tmp_path / "no-model"
    done = run_cli(
        "bench", "--bag", str(labelled_bag), "--runs", "1", "--duration", "1",
        "--set", f"model={missing}", "--startup-timeout", "120",
    )  # fmt: skip
    assert done.returncode == 2
    assert "the node exited with code" in done.stderr and "configure failed" in done.stderr


def test_attach_to_a_running_node_with_bag_timing(labelled_bag, micro_model_dir, tmp_path):
    """--attach measures a node started elsewhere (reliable input: the publisher follows);
    TIMELINE keeps the bag's 5 Hz timing."""
    from ranksam_ros.bench.node_process import NodeProcess
    from ranksam_ros.bench.options import BenchOptions
    from ranksam_ros.bench.runner import run_bench

    params = {"model": str(micro_model_dir), "adapter": "none", "threads": 1}
    params.update({"input.transport": "compressed", "input.reliability": "reliable"})
    node = NodeProcess(None, params, tmp_path / "node.log")
    node.start()
    try:
        options = BenchOptions(
            bag=str(labelled_bag), mode="timeline", duration=2.0, runs=1, attach=True,
            node_pid=node.pid, fastdds_profile=False, quiet=True, startup_timeout=120,
        )  # fmt: skip
        report = run_bench(options)
    finally:
        code = node.stop()
    assert code == 0, node.log_tail()
    assert report["metadata"]["mode"] == "timeline" and report["metadata"]["attach"]
    assert report["NUM_FRAMES_SENT"] == 10 and report["NUM_FRAMES_RECEIVED"] > 0
    # The replayer never plays faster than the bag. A stall of the test process longer than a
    # frame period (a loaded CI machine) is counted in LATE_SENDS and shifts the rest of the
    # schedule instead of bursting; without one, the sends keep the bag's 5 Hz.
    assert report["SENT_RATE_HZ"] <= 5.0 * 1.1
    if report["LATE_SENDS"] == 0:
        assert report["SENT_RATE_HZ"] == pytest.approx(5.0, rel=0.1)
    # Sampled from the node's own process while it decoded frames: it used some CPU.
    assert report["NODE_CPU_MEAN_PERCENT"] > 0 and "cold_start_s" not in report["custom"]
    meta = report["metadata"]
    assert meta["node_params"]["model"] == str(micro_model_dir) and meta["backend"] == "torch"
    assert meta["input_reliability"] == "reliable"
    assert meta["node_params"]["benchmark_mode"] is False  # wall-clock stamps pass age gates
