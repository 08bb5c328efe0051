from __future__ import annotations

import json
import math
import subprocess
import sys

import numpy as np
import pytest

from ranksam_ros.backends.torch_backend import TorchBackend
from ranksam_ros.config import CAMVID_CLASSES, DataConfig
from ranksam_ros.eval.confusion import ConfusionMatrix
from ranksam_ros.eval.evaluate import evaluate
from ranksam_ros.eval.options import EvalOptions
from ranksam_ros.eval.segments import summarize_segments
from ranksam_ros.modeling.prompt_predictor import build_prompt_predictor
from ranksam_ros.modeling.registry import save_model

REPORT_KEYS = {
    "miou",
    "miou_large",
    "miou_unclipped",
    "box_baseline_miou",
    "class_iou",
    "images",
    "segments",
    "seconds_per_image",
}


def test_summary_means_and_large_split():
    rows = [
        (3, 5000, 0.9, 0.8, 0.85, 0.6, 0.5),
        (3, 100, 0.5, 0.4, 0.5, 0.3, 0.2),
        (8, 2000, 0.7, 0.6, 0.6, 0.9, 0.8),
    ]
    report = summarize_segments(rows, CAMVID_CLASSES, large_area=1000)
    assert math.isclose(report["miou"], 0.7)
    assert math.isclose(report["miou_large"], 0.8)
    assert math.isclose(report["box_baseline_miou"], 0.6)
    assert math.isclose(report["miou_unclipped"], 0.65)
    assert math.isclose(report["miou_large_unclipped"], 0.725)
    assert report["class_iou"] == {"road": pytest.approx(0.7), "car": pytest.approx(0.7)}
    assert report["segments"] == 3 and report["segments_large"] == 2
    assert math.isclose(report["boundary_iou"], 0.6)
    assert math.isclose(report["boundary_iou_001"], 0.5)
    assert math.isclose(report["boundary_iou_large"], 0.75)
    assert report["class_boundary_iou"] == {"road": pytest.approx(0.45), "car": pytest.approx(0.9)}


def test_boundary_iou_scores_the_contour_band_only():
    from ranksam_ros.eval.segments import boundary_iou

    truth = np.zeros((100, 100), bool)
    truth[20:80, 20:80] = True
    assert boundary_iou(truth, truth, 0.02) == 1.0
    shifted = np.roll(truth, 2, axis=1)
    # A 2-pixel shift keeps the region IoU high but moves the whole band.
    region = (truth & shifted).sum() / (truth | shifted).sum()
    score = boundary_iou(truth, shifted, 0.02)
    assert region > 0.9 and score < 0.8
    assert boundary_iou(truth, shifted, 0.01) < score  # a narrower band is stricter
    assert boundary_iou(truth, np.zeros_like(truth), 0.02) == 0.0


def test_box_eval_runs_and_is_deterministic(frames_dir, micro_model):
    backend = TorchBackend(micro_model)
    options = EvalOptions(data=str(frames_dir), limit=2, degrade="mixed", seed=3)
    first = evaluate(options, backend)
    second = evaluate(options, backend)
    assert REPORT_KEYS <= set(first)
    assert first["images"] == 2 and first["segments"] > 10
    assert 0.0 <= first["miou"] <= 1.0 and 0.0 < first["box_baseline_miou"] <= 1.0
    assert first["miou"] == second["miou"]


def test_box_eval_clipping_is_switchable(frames_dir, micro_model):
    backend = TorchBackend(micro_model)
    base = {"data": str(frames_dir), "limit": 2}
    clipped = evaluate(EvalOptions(**base), backend)
    plain = evaluate(EvalOptions(**base, pipeline_overrides=("clip_to_box=false",)), backend)
    assert clipped["clip_to_box"] and not plain["clip_to_box"]
    assert plain["miou"] == plain["miou_unclipped"] == clipped["miou_unclipped"]
    # Clipping only removes pixels outside the segment's own tight box: never lowers IoU.
    assert clipped["miou"] >= clipped["miou_unclipped"]


def test_point_eval_clicks_once_per_segment_without_clipping(frames_dir, micro_model):
    backend = TorchBackend(micro_model)
    base = {"data": str(frames_dir), "limit": 2}
    boxes = evaluate(EvalOptions(**base), backend)
    points = evaluate(EvalOptions(**base, prompts="point"), backend)
    assert points["prompts"] == "point" and not points["clip_to_box"]
    assert points["segments"] == boxes["segments"]
    assert points["miou"] == points["miou_unclipped"] != boxes["miou"]
    assert 0.0 <= points["miou"] <= 1.0


def test_eval_cli_writes_json(frames_dir, micro_model, tmp_path):
    model = tmp_path / "m.safetensors"
    save_model(model, micro_model)
    out = tmp_path / "report.json"
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "ranksam_ros.cli",
            "eval",
            "--model",
            str(model),
            "--data",
            str(frames_dir),
            "--limit",
            "1",
            "--degrade",
            "fog",
            "--severities",
            "5,4",
            "--sequences",
            "0016E5",
            "--json",
            str(out),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    report = json.loads(out.read_text())
    assert REPORT_KEYS <= set(report) and report["images"] == 1
    assert report["degrade"] == "fog" and report["severities"] == [5, 4]
    assert report["sequences"] == ["0016E5"] and "sequences 0016E5" in done.stdout
    assert "miou" in done.stdout


def test_eval_cli_errors_are_clear(tmp_path):
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "ranksam_ros.cli",
            "eval",
            "--model",
            "micro",
            "--data",
            str(tmp_path),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 2 and "no images/ folder" in done.stderr
    heavier = subprocess.run(
        [sys.executable, "-m", "ranksam_ros.cli", "eval", "--data", ".", "--severities", "4,9"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert heavier.returncode == 2 and "--severities" in heavier.stderr


def test_auto_and_grid_eval(frames_dir, micro_model, tmp_path):
    from ranksam_ros.modeling.prompt_predictor import save_prompt_predictor

    model_dir = tmp_path / "micro-model"
    model_dir.mkdir()
    save_model(model_dir / "model.safetensors", micro_model)
    names = tuple(f"c{i}" for i in range(11))
    predictor = build_prompt_predictor(micro_model.arch, names)
    save_prompt_predictor(model_dir / "prompt_predictor.safetensors", predictor)
    # The predictor's classes are not CamVid's: the data config names them the same way.
    dataset = DataConfig(class_names=names, thing_classes=())
    base = dict(model=str(model_dir), data=str(frames_dir), limit=1, dataset=dataset)
    auto = evaluate(
        EvalOptions(prompts="auto", pipeline_overrides=("prompts.threshold=0.0",), **base)
    )
    grid = evaluate(EvalOptions(prompts="grid", **base))
    for report in (auto, grid):
        assert 0.0 <= report["miou"] <= 1.0 and tuple(report["class_iou"]) == names
        assert report["images"] == 1 and report["seconds_per_image"] > 0
        assert report["fill_semantic"] and report["miou"] == report["miou_filled"]
        assert 0.0 <= report["miou_masks_only"] <= 1.0
    assert grid["prompts_per_image"] == 1024
    assert 0 < auto["prompts_per_image"] <= auto["candidates_per_image"] <= 64
    # The report carries the pipeline's own counts for that one frame.
    from ranksam_ros.config import PipelineConfig, PromptConfig
    from ranksam_ros.data.folder import SegmentationFolder
    from ranksam_ros.modeling.registry import build_model
    from ranksam_ros.pipeline.pipeline import Pipeline

    cfg = PipelineConfig(prompts=PromptConfig(threshold=0.0), fill_semantic=False)
    direct = Pipeline(TorchBackend(build_model(str(model_dir))), cfg)(
        SegmentationFolder(frames_dir)[0][0]
    )
    assert auto["duplicates_per_image"] == direct.duplicates
    assert (auto["prompts_per_image"], auto["candidates_per_image"]) == (
        direct.prompts_decoded,
        direct.candidates,
    )


def test_confusion_matrix_counts_unassigned_as_miss():
    confusion = ConfusionMatrix(num_classes=2)
    truth = np.array([[0, 0, 1, 1, 255]])
    predicted = np.array([[0, 255, 1, 0, 1]])
    confusion.add(truth, predicted)
    np.testing.assert_allclose(confusion.class_iou(), [1 / 3, 1 / 2])


def _sequence_folder(frames_dir, root):
    """Bundled frames under two sequence prefixes: 3 of 0016E5 and 2 renamed to 0099XX."""
    for sub in ("images", "labels"):
        (root / sub).mkdir(parents=True)
    images = sorted((frames_dir / "images").iterdir())[:5]
    for index, image in enumerate(images):
        stem = image.stem if index < 3 else f"0099XX_{index:05d}"
        (root / "images" / f"{stem}.jpg").symlink_to(image)
        (root / "labels" / f"{stem}.png").symlink_to(frames_dir / "labels" / f"{image.stem}.png")
    return root


def test_sequences_pick_the_frames_and_are_reported(frames_dir, micro_model, tmp_path):
    data = _sequence_folder(frames_dir, tmp_path / "data")
    backend = TorchBackend(micro_model)
    held_out = evaluate(EvalOptions(data=str(data), sequences=("0099XX",)), backend)
    assert held_out["images"] == 2 and held_out["sequences"] == ["0099XX"]
    everything = evaluate(EvalOptions(data=str(data), limit=4), backend)
    assert everything["images"] == 4 and everything["sequences"] == []
    with pytest.raises(ValueError, match="no images of sequences \\['0042ZZ'\\]"):
        evaluate(EvalOptions(data=str(data), sequences=("0042ZZ",)), backend)


def test_stride_spreads_the_frames_and_limit_caps_them(frames_dir, tmp_path):
    from ranksam_ros.eval.frames import open_frames

    data = _sequence_folder(frames_dir, tmp_path / "data")  # 5 frames
    _, every_other = open_frames(EvalOptions(data=str(data), stride=2))
    assert every_other == [0, 2, 4]
    _, capped = open_frames(EvalOptions(data=str(data), stride=2, limit=2))
    assert capped == [0, 2]
    with pytest.raises(ValueError, match="--stride must be >= 1"):
        EvalOptions(data=str(data), stride=0)


def test_class_names_and_ignore_label_come_from_the_data_config(frames_dir, micro_model):
    backend = TorchBackend(micro_model)  # no prompt predictor: no class names to compare
    three = DataConfig(class_names=("sky", "building", "pole"), num_classes=3, thing_classes=())
    small = evaluate(EvalOptions(data=str(frames_dir), limit=1, dataset=three), backend)
    full = evaluate(EvalOptions(data=str(frames_dir), limit=1), backend)
    assert set(small["class_iou"]) <= {"sky", "building", "pole"} and small["class_iou"]
    assert 0 < small["segments"] < full["segments"]
    # Ignoring road (3) instead of label 11 drops road's segments and keeps the rest.
    no_road = DataConfig(ignore_label=3)
    ignored = evaluate(EvalOptions(data=str(frames_dir), limit=1, dataset=no_road), backend)
    assert "road" in full["class_iou"] and "road" not in ignored["class_iou"]


def test_model_classes_must_match_the_data(frames_dir, micro_model):
    micro_model.prompt_predictor = build_prompt_predictor(micro_model.arch, ("a", "b", "c")).eval()
    backend = TorchBackend(micro_model)
    for prompts in ("box", "auto"):
        options = EvalOptions(data=str(frames_dir), limit=1, prompts=prompts)
        with pytest.raises(
            ValueError, match=r"model's classes \['a', 'b', 'c'\] are not the data's \['sky'"
        ):
            evaluate(options, backend)


def test_options_reject_bad_values_by_name():
    with pytest.raises(ValueError, match="--prompts 'boxes': choose one of box, point, auto, grid"):
        EvalOptions(prompts="boxes")
    with pytest.raises(ValueError, match="--severities \\[4, 9\\]"):
        EvalOptions(severities=(4, 9))
    with pytest.raises(ValueError, match="backend='tflite'"):
        EvalOptions(backend="tflite")
    with pytest.raises(ValueError, match="--limit must be >= 0"):
        EvalOptions(limit=-1)


def test_panoptic_eval_is_perfect_when_the_pipeline_reproduces_the_labels(tmp_path):
    import sys
    from pathlib import Path

    from PIL import Image

    sys.path.insert(0, str(Path(__file__).parent))
    from fakes import MASK_SIZE, FakeBackend, FakeObject, Peak

    from ranksam_ros.config import DataConfig, PipelineConfig, PromptConfig
    from ranksam_ros.eval.evaluate import evaluate

    semantic = np.zeros((MASK_SIZE, MASK_SIZE), np.int64)  # stuff 0 ...
    semantic[4:12, 4:20] = 1  # ... one car (a thing)
    semantic[20:32, :] = 2  # ... and stuff 2 at the bottom
    backend = FakeBackend(
        objects=(FakeObject(4, 4, 12, 20),),
        peaks=(Peak(1, 2, 3, 0.9),),
        class_names=("road", "car", "sky"),
        semantic_map=semantic,
    )
    for folder in ("images", "labels"):
        (tmp_path / folder).mkdir()
    Image.fromarray(np.full((64, 64, 3), 128, np.uint8)).save(tmp_path / "images" / "f.png")
    label = np.repeat(np.repeat(semantic, 2, 0), 2, 1).astype(np.uint8)
    label[0, 0] = 3  # an ignored pixel
    Image.fromarray(label).save(tmp_path / "labels" / "f.png")
    dataset = DataConfig(
        class_names=("road", "car", "sky"), num_classes=3, ignore_label=3, thing_classes=("car",)
    )
    prompts = PromptConfig(smoothing_sigma=0.0, threshold=0.3)
    options = EvalOptions(
        data=str(tmp_path),
        prompts="panoptic",
        dataset=dataset,
        pipeline_overrides=("prompts.smoothing_sigma=0.0", "prompts.threshold=0.3"),
    )
    report = evaluate(options, backend=backend)
    assert PipelineConfig(prompts=prompts).mode == report["mode"] == "panoptic"
    assert report["pq"] == report["pq_things"] == report["pq_stuff"] == pytest.approx(1.0)
    assert report["miou"] == pytest.approx(1.0) and report["boundary_f1"] == pytest.approx(1.0)
    assert report["prompts_per_image"] == 1.0


def test_prior_correction_takes_back_a_class_weighted_heads_bias():
    from ranksam_ros.eval.prior import prior_offsets, sweep_offsets
    from ranksam_ros.graph.preprocess import ResizeInfo

    weights = np.array([1.0, 4.0])
    np.testing.assert_allclose(prior_offsets(weights, 0.5), [0.0, -0.5 * np.log(4.0)])
    with pytest.raises(ValueError, match="positive and finite"):
        prior_offsets(np.array([1.0, 0.0]), 1.0)
    # Every pixel is class 0, but the weighted head's class-1 logit is inflated by log 4 - 0.5:
    # raw, it predicts class 1 everywhere; fully corrected, class 0 everywhere.
    logits = np.zeros((2, 8, 8), np.float32)
    logits[1] = np.log(4.0) - 0.5
    frame = (logits, ResizeInfo((16, 16), (16, 16), 16), np.zeros((16, 16), np.uint8))
    ious = sweep_offsets([frame], weights, (0.0, 1.0))
    assert ious[0.0][0] == 0.0 and ious[1.0][0] == 1.0
