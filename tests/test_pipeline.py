"""Prompt selection, redundant-prompt deletion and the assembled pipeline result."""

from __future__ import annotations

import numpy as np
import pytest

from ranksam_ros.backends.torch_backend import TorchBackend
from ranksam_ros.config import PipelineConfig, PromptConfig
from ranksam_ros.modeling.prompt_predictor import build_prompt_predictor
from ranksam_ros.pipeline.pipeline import Pipeline, PromptSet
from ranksam_ros.pipeline.postprocess import (
    clip_to_boxes,
    decode_rle,
    encode_rle,
    mask_nms,
    paint_labels,
)
from ranksam_ros.pipeline.prompts import decode_with_deletion, find_peaks


def _blob(grid, row, col, height=1.0, sigma=1.5):
    ys, xs = np.mgrid[0:grid, 0:grid]
    return height * np.exp(-((ys - row) ** 2 + (xs - col) ** 2) / (2 * sigma**2))


def test_peaks_sorted_thresholded_and_spaced():
    maps = np.zeros((3, 32, 32), np.float32)
    maps[0] = _blob(32, 5, 5, 0.9) + _blob(32, 20, 25, 0.6)
    maps[2] = _blob(32, 6, 6, 0.8) + _blob(32, 28, 3, 0.2)
    cfg = PromptConfig(threshold=0.3, smoothing_sigma=0.0, min_spacing=2, cross_class_spacing=3)
    peaks = find_peaks(maps, cfg, input_size=256)
    assert peaks.classes.tolist() == [0, 0]  # class 2's peak at (6, 6) sits next to a better one
    assert peaks.cells.tolist() == [[5, 5], [20, 25]]
    np.testing.assert_allclose(peaks.xy[0], [(5 + 0.5) * 8, (5 + 0.5) * 8])
    assert np.all(np.diff(peaks.scores) <= 0)
    assert len(find_peaks(maps, PromptConfig(max_prompts=1, smoothing_sigma=0.0), 256)) == 1
    no_cross = PromptConfig(threshold=0.3, smoothing_sigma=0.0, cross_class_spacing=0)
    assert sorted(find_peaks(maps, no_cross, 256).classes.tolist()) == [0, 0, 2]


@pytest.mark.parametrize("fill", [0.0, np.nan, np.inf])
def test_peaks_on_empty_or_broken_maps_are_empty(fill):
    maps = np.full((2, 16, 16), fill, np.float32)
    assert len(find_peaks(maps, PromptConfig(), 128)) == 0


def test_deletion_skips_candidates_inside_accepted_masks():
    maps = np.zeros((1, 16, 16), np.float32)
    for row, col, h in [(3, 3, 0.9), (3, 8, 0.8), (12, 12, 0.7)]:
        maps[0] += _blob(16, row, col, h, 0.8)
    cfg = PromptConfig(threshold=0.3, smoothing_sigma=0.0, min_spacing=1, decode_batch=1)
    candidates = find_peaks(maps, cfg, input_size=64)
    calls = []

    def decode(xy):
        calls.append(xy.copy())
        logits = np.full((len(xy), 1, 16, 16), -5.0, np.float32)
        logits[:, :, 0:8, 0:12] = 5.0  # every mask covers the top-left area
        return logits, np.full((len(xy), 1), 0.95, np.float32)

    result = decode_with_deletion(candidates, decode, cfg, mask_size=16, input_size=64)
    assert len(candidates) == 3
    assert result.decoded == 2 and result.deleted == 1  # the second peak lies inside the first mask
    assert result.tried == [0, 2]
    off = decode_with_deletion(
        candidates, decode, PromptConfig(delete_redundant=False, decode_batch=1), 16, 64
    )
    assert off.decoded == 3 and off.deleted == 0


def test_mask_nms_and_labels():
    masks = np.zeros((3, 10, 10), bool)
    masks[0, :5] = True
    masks[1, :4] = True  # IoU 0.8 with mask 0
    masks[2, 6:] = True
    keep = mask_nms(masks, np.array([0.5, 0.9, 0.7]), 0.7)
    assert keep.tolist() == [1, 2]
    labels = paint_labels(masks, np.array([0.5, 0.9, 0.7]), np.array([1, 2, 3]), 0, np.uint16)
    assert labels[0, 0] == 2 and labels[4, 0] == 1 and labels[5, 0] == 0 and labels[9, 9] == 3


@pytest.mark.parametrize("seed", range(4))
def test_rle_round_trip(seed):
    mask = np.random.default_rng(seed).random((13, 17)) > 0.5
    counts = encode_rle(mask)
    assert sum(counts) == mask.size
    assert np.array_equal(decode_rle(counts, 13, 17), mask)
    assert encode_rle(np.ones((2, 2), bool)) == [0, 4]
    with pytest.raises(ValueError):
        decode_rle([3, 4], 3, 3)


@pytest.fixture
def pipeline_model(micro_model):
    micro_model.prompt_predictor = build_prompt_predictor(micro_model.arch, ("a", "b", "c")).eval()
    return micro_model


def test_promptless_result_is_well_formed(pipeline_model, frames_dir):
    from ranksam_ros.data.folder import read_rgb

    image = read_rgb(sorted((frames_dir / "images").iterdir())[0])
    cfg = PipelineConfig(prompts=PromptConfig(threshold=0.0, min_pred_iou=0.0, max_prompts=12))
    result = Pipeline(TorchBackend(pipeline_model), cfg)(image)
    assert result.source_hw == (360, 480)
    assert result.instance_ids.shape == (360, 480) and result.instance_ids.dtype == np.uint16
    assert result.semantic.shape == (360, 480) and result.semantic.dtype == np.uint8
    assert 0 < result.prompts_decoded <= result.candidates <= 12
    assert {
        "preprocess",
        "encoder",
        "prompt_predictor",
        "prompts",
        "decoder",
        "postprocess",
    } <= set(result.timings_ms)
    for inst in result.instances:
        assert inst.mask.shape == (360, 480) and inst.area == inst.mask.sum() > 0
        assert 0 <= inst.class_id < 3 and inst.class_name in ("a", "b", "c")
        x0, y0, x1, y1 = inst.box
        assert inst.mask[y0 : y1 + 1, x0 : x1 + 1].sum() == inst.area
    ids = {inst.instance_id for inst in result.instances}
    assert set(np.unique(result.instance_ids)) - {0} <= ids


@pytest.mark.parametrize("value", [0, 255])
def test_blank_frames_give_empty_results(pipeline_model, value):
    image = np.full((40, 60, 3), value, np.uint8)
    result = Pipeline(TorchBackend(pipeline_model))(image)  # default threshold: nothing passes
    assert result.instances == [] and result.prompts_decoded == 0
    assert np.all(result.instance_ids == 0)
    assert result.semantic.max() < 3  # dense fill: every pixel gets one of the 3 classes
    unfilled = Pipeline(TorchBackend(pipeline_model), PipelineConfig(fill_semantic=False))(image)
    assert np.all(unfilled.semantic == 255)


def test_fill_unassigned_takes_the_most_likely_class_only_in_holes():
    from ranksam_ros.graph.preprocess import ResizeInfo
    from ranksam_ros.pipeline.postprocess import fill_unassigned

    info = ResizeInfo(source_hw=(30, 40), resized_hw=(24, 32), input_size=32)
    probs = np.zeros((3, 4, 4), np.float32)
    probs[2, :, :2] = 1.0  # class 2 on the left half of the grid
    probs[1, :, 2:] = 1.0  # class 1 on the right half
    semantic = np.full((30, 40), 255, np.uint8)
    semantic[:5, :5] = 0
    filled = fill_unassigned(semantic, probs, info, 255)
    assert np.all(filled[:5, :5] == 0)  # assigned pixels are kept
    assert np.all(filled[10:, :15] == 2) and np.all(filled[:, 25:] == 1)
    assert semantic[20, 20] == 255  # the input is not modified


def test_given_prompts(pipeline_model):
    image = np.random.default_rng(0).integers(0, 255, (50, 70, 3), dtype=np.uint8)
    prompts = PromptSet(points=np.array([[10.0, 10.0]]), boxes=np.array([[5.0, 5.0, 40.0, 30.0]]))
    cfg = PipelineConfig(min_area=0, nms_iou=1.0)
    result = Pipeline(TorchBackend(pipeline_model), cfg)(image, prompts)
    assert result.prompts_decoded == 2
    np.testing.assert_allclose(result.prompts_xy, [[10.0, 10.0], [22.5, 17.5]], atol=1e-6)
    with pytest.raises(ValueError, match="finite"):
        Pipeline(TorchBackend(pipeline_model))(image, PromptSet(points=np.array([[np.nan, 1.0]])))


def test_clip_to_boxes_keeps_only_pixels_inside_each_box():
    masks = np.ones((3, 10, 12), bool)
    boxes = np.array([[2.0, 3.0, 5.0, 6.0], [np.nan] * 4, [-4.0, 8.2, 30.0, 40.0]])
    clip_to_boxes(masks, boxes)
    expected = np.zeros((10, 12), bool)
    expected[3:7, 2:6] = True
    np.testing.assert_array_equal(masks[0], expected)
    assert masks[1].all()  # a point prompt's mask is left alone
    assert masks[2][8:].all() and not masks[2][:8].any()  # fractional edges round outwards


@pytest.mark.parametrize("clip", [True, False])
def test_box_prompt_masks_are_clipped_to_their_box(clip):
    import torch

    from ranksam_ros.modeling.registry import build_model

    torch.manual_seed(3)  # random weights whose predicted IoU (the score) is positive
    model = build_model("micro")
    image = np.random.default_rng(1).integers(0, 255, (50, 70, 3), dtype=np.uint8)
    box = np.array([[10.0, 5.0, 40.0, 30.0]])
    # Threshold far below any logit: the decoded mask covers the whole frame before clipping.
    cfg = PipelineConfig(min_area=0, nms_iou=1.0, box_mask_threshold=-1e6, clip_to_box=clip)
    result = Pipeline(TorchBackend(model), cfg)(image, PromptSet(boxes=box))
    (instance,) = result.instances
    assert instance.area == (31 * 26 if clip else 50 * 70)
    assert instance.box == ((10, 5, 40, 30) if clip else (0, 0, 69, 49))


def test_disjoint_boxes_are_not_duplicates_after_clipping():
    import torch

    from ranksam_ros.modeling.registry import build_model

    torch.manual_seed(3)  # random weights whose predicted IoU (the score) is positive
    model = build_model("micro")
    image = np.random.default_rng(1).integers(0, 255, (50, 70, 3), dtype=np.uint8)
    boxes = np.array([[0.0, 0.0, 30.0, 49.0], [40.0, 0.0, 69.0, 49.0]])
    # Unclipped, both masks cover the whole frame and NMS would keep only one of them.
    cfg = PipelineConfig(min_area=0, box_mask_threshold=-1e6)
    result = Pipeline(TorchBackend(model), cfg)(image, PromptSet(boxes=boxes))
    assert result.duplicates == 0
    assert sorted(inst.box for inst in result.instances) == [(0, 0, 30, 49), (40, 0, 69, 49)]


def test_box_and_point_prompts_take_their_own_mask_threshold():
    import torch

    from ranksam_ros.modeling.registry import build_model

    torch.manual_seed(3)
    model = build_model("micro")
    image = np.random.default_rng(1).integers(0, 255, (50, 70, 3), dtype=np.uint8)
    prompts = PromptSet(points=np.array([[60.0, 40.0]]), boxes=np.array([[10.0, 5.0, 40.0, 30.0]]))
    # Point masks cut above any logit (empty), box masks below any (the whole box).
    cfg = PipelineConfig(min_area=0, mask_threshold=1e6, box_mask_threshold=-1e6)
    (instance,) = Pipeline(TorchBackend(model), cfg)(image, prompts).instances
    assert instance.box == (10, 5, 40, 30) and instance.area == 31 * 26
    swapped = PipelineConfig(min_area=0, mask_threshold=-1e6, box_mask_threshold=1e6)
    (instance,) = Pipeline(TorchBackend(model), swapped)(image, prompts).instances
    assert instance.area == 50 * 70  # the point's mask: the whole frame


def test_out_of_range_prompt_config_is_a_clear_error():
    with pytest.raises(ValueError, match="prompts.threshold"):
        PromptConfig(threshold=1.5)
    with pytest.raises(ValueError, match="max_prompts"):
        PromptConfig(max_prompts=0)
    with pytest.raises(ValueError, match="class_source"):
        PromptConfig(class_source="guess")


def test_hybrid_decodes_given_prompts_first(pipeline_model):
    image = np.random.default_rng(0).integers(0, 255, (50, 70, 3), dtype=np.uint8)
    cfg = PipelineConfig(
        prompts=PromptConfig(threshold=0.0, min_pred_iou=0.0, max_prompts=6), min_area=0
    )
    pipeline = Pipeline(TorchBackend(pipeline_model), cfg)
    frame = pipeline.encode(image)
    given = PromptSet(points=np.array([[30.0, 20.0]]))
    hybrid = pipeline.segment(frame, given, auto=True)
    only_auto = pipeline.segment(frame)
    assert hybrid.prompts_decoded >= 1
    np.testing.assert_allclose(hybrid.prompts_xy[0], [30.0, 20.0], atol=1e-6)
    assert hybrid.candidates <= only_auto.candidates + 1


def test_backends_run_numpy_blas_single_threaded(micro_model):
    from threadpoolctl import threadpool_info

    TorchBackend(micro_model)
    blas = [pool for pool in threadpool_info() if pool["user_api"] == "blas"]
    assert blas and all(pool["num_threads"] == 1 for pool in blas)
