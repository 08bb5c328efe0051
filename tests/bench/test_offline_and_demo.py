"""``ranksam bench --offline`` (pipeline in-process, mIoU) and ``ranksam demo``."""

from __future__ import annotations

import json

import pytest

pytest.importorskip("rosbags")


def test_offline_bench_with_labels_gives_a_miou(
    labelled_bag, micro_model_dir, eager_params, tmp_path
):
    from ranksam_ros.bench.options import BenchOptions
    from ranksam_ros.bench.runner import run_bench

    overrides = (f"model={micro_model_dir}", "adapter=none", *eager_params)
    options = BenchOptions(
        bag=str(labelled_bag), offline=True, overrides=overrides, json=str(tmp_path / "o.json")
    )
    report = run_bench(options)
    scored = [iou for iou in report["class_iou"].values() if iou is not None]
    # The report rounds every number to 4 decimals.
    assert report["semantic_miou"] == pytest.approx(sum(scored) / len(scored), abs=1e-4)
    assert max(scored) > 0  # the labels were read: a dense map overlaps some class
    assert report["labelled_frames"] == report["frames"] == 10
    assert 0 < report["MODEL_TIME_MEDIAN"] <= report["MODEL_TIME_P95"]
    assert set(report["class_iou"]) >= {"road", "sky"}
    written = json.loads((tmp_path / "o.json").read_text())
    assert written["metadata"]["mode"] == "offline"
    assert written["metadata"]["model_id"] == "micro-model"


def test_offline_rejects_node_options(labelled_bag):
    from ranksam_ros.bench.options import BenchOptions
    from ranksam_ros.bench.runner import run_bench

    with pytest.raises(ValueError, match="cannot --attach or --record"):
        run_bench(BenchOptions(bag=str(labelled_bag), offline=True, record="x.mcap"))
    with pytest.raises(ValueError, match="apply to --mode looping"):
        run_bench(BenchOptions(bag=str(labelled_bag), mode="timeline", rates=(5.0,)))


def test_demo_names_a_missing_model(tmp_path, capsys):
    from ranksam_ros.cli import main

    assert main(["demo", "--out", str(tmp_path), "--model", "no-such-model"]) == 2
    err = capsys.readouterr().err
    assert "model 'no-such-model' not found" in err and "--model" in err


def test_demo_names_a_missing_adapter(tmp_path, micro_model_dir):
    from ranksam_ros.demo import run_demo

    with pytest.raises(FileNotFoundError, match="no adapter 'gated'"):
        run_demo(out_dir=tmp_path, model=str(micro_model_dir), adapter="gated")


@pytest.mark.ros
@pytest.mark.slow  # about 26 s: a node start, a replay, the offline pass
def test_demo_replays_through_the_node_and_writes_its_outputs(micro_model_dir, tmp_path, run_cli):
    pytest.importorskip("rclpy")
    pytest.importorskip("ranksam_msgs")
    pytest.importorskip("psutil")
    out = tmp_path / "demo"
    done = run_cli(
        "demo", "--out", str(out), "--model", str(micro_model_dir), "--adapter", "none",
        "--duration", "2", "--rate", "3",
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    assert "latency p50" in done.stdout and "semantic mIoU" in done.stdout
    assert (out / "demo.mcap").is_file() and (out / "demo.mcap").stat().st_size < 5_000_000
    assert len(list((out / "overlays").glob("*.png"))) == 10
    assert (out / "contact_sheet.png").is_file()
    assert sorted(p.name for p in (out / "plots").iterdir()) == [
        "latency_hist_3hz.png",
        "latency_series_3hz.png",
    ]
    report = json.loads((out / "bench.json").read_text())
    assert report["NUM_FRAMES_RECEIVED"] > 0 and "LATENCY_P95" in report
    summary = json.loads((out / "summary.json").read_text())
    offline_miou = report["custom"]["offline"]["semantic_miou"]  # rounded to 4 decimals
    assert summary["semantic_miou"] == pytest.approx(offline_miou, abs=1e-4) and offline_miou > 0
    assert summary["live"]["RECEIVED_RATE_HZ"] > 0
