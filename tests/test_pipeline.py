"""Prompt selection, redundant-prompt deletion and the assembled pipeline result."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
from fakes import GRID, MASK_SIZE, FakeBackend, FakeObject, Peak, blank_image, source_mask

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


def test_clip_to_boxes_keeps_only_pixels_inside_each_box():
    masks = np.ones((3, 10, 12), bool)
    boxes = np.array([[2.0, 3.0, 5.0, 6.0], [np.nan] * 4, [-4.0, 8.2, 30.0, 40.0]])
    clip_to_boxes(masks, boxes)
    expected = np.zeros((10, 12), bool)
    expected[3:7, 2:6] = True
    np.testing.assert_array_equal(masks[0], expected)
    assert masks[1].all()  # a point prompt's mask is left alone
    assert masks[2][8:].all() and not masks[2][:8].any()  # fractional edges round outwards


def test_out_of_range_prompt_config_is_a_clear_error():
    with pytest.raises(ValueError, match="prompts.threshold"):
        PromptConfig(threshold=1.5)
    with pytest.raises(ValueError, match="max_prompts"):
        PromptConfig(max_prompts=0)
    with pytest.raises(ValueError, match="class_source"):
        PromptConfig(class_source="guess")


def test_backends_run_numpy_blas_single_threaded(micro_model):
    from threadpoolctl import threadpool_info

    TorchBackend(micro_model)
    blas = [pool for pool in threadpool_info() if pool["user_api"] == "blas"]
    assert blas and all(pool["num_threads"] == 1 for pool in blas)


# --- the pipeline on a designed scene (tests/fakes.py): exact outcomes -------------------

# A car spanning grid cells (1..2, 1..6) with two peaks on it, a sign at (5..6, 1..2) and a peak
# on nothing at (6, 5); the class map gives the car class 1 and the sign class 2.
CAR = FakeObject(top=4, left=4, bottom=12, right=28, iou=0.9)
SIGN = FakeObject(top=20, left=4, bottom=28, right=12, iou=0.8)
CAR_PEAK = Peak(class_id=1, row=1, col=1, confidence=0.9)
SIGN_PEAK = Peak(class_id=0, row=5, col=1, confidence=0.8)  # the map's class is not the sign's
CAR_TAIL_PEAK = Peak(class_id=1, row=1, col=5, confidence=0.6)  # also on the car
EMPTY_PEAK = Peak(class_id=2, row=6, col=5, confidence=0.5)  # on nothing: an empty mask
SCENE_PEAKS = (CAR_PEAK, SIGN_PEAK, CAR_TAIL_PEAK, EMPTY_PEAK)  # decoded in this order


def _class_map() -> np.ndarray:
    classes = np.zeros((GRID, GRID), np.int64)
    classes[1:3, 1:7] = 1
    classes[5:7, 1:3] = 2
    return classes


def _scene(objects=(CAR, SIGN), peaks=SCENE_PEAKS, **kwargs) -> FakeBackend:
    return FakeBackend(objects, peaks, class_map=_class_map(), **kwargs)


def _auto(fill_semantic: bool = False, **prompts) -> PipelineConfig:
    """Exact peaks (no smoothing), decoded one at a time so deletion can act between them."""
    options = dict(smoothing_sigma=0.0, threshold=0.3, decode_batch=1, **prompts)
    return PipelineConfig(prompts=PromptConfig(**options), fill_semantic=fill_semantic)


def test_peaks_become_instances_with_exact_masks_ids_and_classes():
    backend = _scene(active_rank=3.5)
    result = Pipeline(backend, _auto())(blank_image())
    assert result.candidates == 4 and result.prompts_decoded == 3  # the car's tail: deleted
    np.testing.assert_array_equal(result.prompts_xy, [(12, 12), (12, 44), (44, 52)])
    np.testing.assert_allclose(result.prompt_scores, [0.9, 0.8, 0.5])
    assert result.prompt_classes.tolist() == [1, 0, 2] and result.duplicates == 0
    car, sign = result.instances
    assert (car.instance_id, car.class_id, car.class_name) == (1, 1, "b")
    assert (sign.instance_id, sign.class_id, sign.class_name) == (2, 2, "c")  # pooled class
    assert np.array_equal(car.mask, source_mask(CAR)) and car.area == 16 * 48
    assert np.array_equal(sign.mask, source_mask(SIGN)) and sign.box == (8, 40, 23, 55)
    assert car.score == pytest.approx(0.9 * 0.9) and sign.score == pytest.approx(0.8 * 0.8)
    assert (car.predicted_iou, car.prompt_score) == pytest.approx((0.9, 0.9))
    assert (car.prompt_xy, sign.prompt_xy) == ((12.0, 12.0), (12.0, 44.0))
    assert (car.prompt_index, sign.prompt_index) == (0, 1)
    assert not car.prompt_given and not sign.prompt_given
    expected_ids = np.zeros((64, 64), np.uint16)
    expected_ids[source_mask(CAR)], expected_ids[source_mask(SIGN)] = 1, 2
    np.testing.assert_array_equal(result.instance_ids, expected_ids)
    expected_semantic = np.full((64, 64), 255, np.uint8)
    expected_semantic[source_mask(CAR)], expected_semantic[source_mask(SIGN)] = 1, 2
    np.testing.assert_array_equal(result.semantic, expected_semantic)
    assert result.active_rank == 3.5


def test_prompts_and_masks_are_in_source_pixels():
    result = Pipeline(_scene(), _auto())(blank_image(128, 128))  # scaled by 2 to the input
    np.testing.assert_array_equal(result.prompts_xy, [(24, 24), (24, 88), (88, 104)])
    car = result.instances[0]
    assert car.box == (16, 16, 111, 47) and car.prompt_xy == (24.0, 24.0)
    assert car.mask[17:47, 17:111].all()  # two bilinear steps round off the very corners
    assert car.area > 32 * 96 - 8


def test_dense_semantic_fills_uncovered_pixels_from_the_class_map():
    result = Pipeline(_scene(), _auto(fill_semantic=True))(blank_image())
    np.testing.assert_array_equal(result.semantic, np.kron(_class_map(), np.ones((8, 8))))
    assert len(result.instances) == 2


def test_class_source_prompt_takes_the_peak_class():
    result = Pipeline(_scene(), _auto(class_source="prompt"))(blank_image())
    assert [i.class_name for i in result.instances] == ["b", "a"]


def test_redundant_prompt_deletion_trusts_only_confident_masks():
    def run(car_iou: float, delete: bool):
        car = FakeObject(CAR.top, CAR.left, CAR.bottom, CAR.right, iou=car_iou)
        backend = _scene(objects=(car, SIGN))
        result = Pipeline(backend, _auto(delete_redundant=delete))(blank_image())
        return result, backend.decoded_points

    deleted, decoded = run(0.9, True)
    assert (12.0, 12.0) in decoded and (44.0, 12.0) not in decoded  # the tail: never decoded
    assert (deleted.prompts_decoded, deleted.duplicates, len(deleted.instances)) == (3, 0, 2)
    kept, decoded = run(0.9, False)
    assert (44.0, 12.0) in decoded  # decoded, then removed by NMS as a copy of the car
    assert (kept.prompts_decoded, kept.duplicates, len(kept.instances)) == (4, 1, 2)
    assert kept.instances[0].prompt_index == 0  # the better-scored copy survives
    unsure, _ = run(0.6, True)  # below inside_mask_iou (0.7): its mask deletes nothing
    assert (unsure.prompts_decoded, unsure.duplicates) == (4, 1)


def test_decoded_masks_below_min_pred_iou_are_dropped():
    weak_sign = FakeObject(SIGN.top, SIGN.left, SIGN.bottom, SIGN.right, iou=0.2)
    result = Pipeline(_scene(objects=(CAR, weak_sign)), _auto())(blank_image())
    assert result.prompts_decoded == 3 and [i.class_name for i in result.instances] == ["b"]


def test_score_threshold_and_max_instances():
    cfg = _auto()
    assert len(Pipeline(_scene(), replace(cfg, max_instances=1))(blank_image()).instances) == 1
    strict = Pipeline(_scene(), replace(cfg, score_threshold=0.7))(blank_image())
    assert [i.class_name for i in strict.instances] == ["b"]  # 0.81 passes, 0.64 does not


def test_overlaps_are_painted_by_score():
    strong = FakeObject(top=4, left=4, bottom=20, right=20, iou=0.9)
    weak = FakeObject(top=12, left=12, bottom=28, right=28, iou=0.5)
    peaks = (Peak(0, 1, 1, 0.9), Peak(0, 6, 6, 0.9))
    result = Pipeline(FakeBackend((strong, weak), peaks), _auto())(blank_image())
    first, second = result.instances
    assert np.array_equal(first.mask, source_mask(strong))
    assert np.array_equal(second.mask, source_mask(weak))  # IoU 0.14: not a duplicate
    assert np.all(result.instance_ids[24:40, 24:40] == 1)  # the overlap: the better one
    assert np.all(result.instance_ids[40:56, 40:56] == 2)


def test_no_peaks_give_a_well_formed_empty_result():
    result = Pipeline(_scene(peaks=()), _auto())(blank_image())
    assert result.instances == [] and result.prompts_decoded == result.candidates == 0
    assert not result.instance_ids.any() and np.all(result.semantic == 255)
    filled = Pipeline(_scene(peaks=()), _auto(fill_semantic=True))(blank_image()).semantic
    # The class map's regions (bilinear probabilities round their corners off).
    assert np.all(filled[12:20, 12:52] == 1) and np.all(filled[44:52, 12:20] == 2)
    assert np.all(filled[28:40] == 0) and set(np.unique(filled)) == {0, 1, 2}


def test_given_points_and_boxes_keep_their_prompt_index():
    points = np.array([[12.0, 12.0], [60.0, 60.0]])  # on the car; on nothing (empty mask)
    boxes = np.array([[10.0, 44.0, 30.0, 60.0]])
    cfg = PipelineConfig(fill_semantic=False)
    result = Pipeline(_scene(), cfg)(blank_image(), PromptSet(points=points, boxes=boxes))
    np.testing.assert_array_equal(result.prompts_xy, [(12, 12), (60, 60), (20, 52)])
    assert result.candidates == 3 and result.prompts_decoded == 3
    box, car = result.instances  # the box's 0.95 ranks first
    expected_box = np.zeros((64, 64), bool)
    expected_box[44:61, 10:31] = True  # clipped to the pixel-inclusive box
    assert np.array_equal(box.mask, expected_box) and box.box == (10, 44, 30, 60)
    assert np.array_equal(car.mask, source_mask(CAR))
    assert (box.prompt_index, car.prompt_index) == (2, 0)
    assert box.prompt_given and car.prompt_given
    assert (box.prompt_score, car.prompt_score) == (1.0, 1.0) and car.class_name == "b"
    with pytest.raises(ValueError, match="finite"):
        Pipeline(_scene())(blank_image(), PromptSet(points=np.array([[np.nan, 1.0]])))


def test_hybrid_decodes_given_prompts_first_and_skips_peaks_inside_them():
    pipeline = Pipeline(_scene(), _auto())
    frame = pipeline.encode(blank_image())
    given = PromptSet(points=np.array([[20.0, 20.0]]))  # on the car
    result = pipeline.segment(frame, given, auto=True)
    # Both car peaks fall inside the given car mask: only the sign and the empty peak remain.
    np.testing.assert_array_equal(result.prompts_xy, [(20, 20), (12, 44), (44, 52)])
    assert result.candidates == 3
    car, sign = result.instances
    assert (car.prompt_given, car.prompt_index, car.prompt_xy) == (True, 0, (20.0, 20.0))
    assert (sign.prompt_given, sign.prompt_index) == (False, 1)  # after the given prompts
    assert np.array_equal(car.mask, source_mask(CAR))


@pytest.mark.parametrize("clip", [True, False])
def test_box_prompt_masks_are_clipped_to_their_box(clip):
    box = np.array([[10.0, 5.0, 40.0, 30.0]])
    cfg = PipelineConfig(clip_to_box=clip)
    result = Pipeline(FakeBackend(box_spill=2), cfg)(blank_image(), PromptSet(boxes=box))
    (instance,) = result.instances
    if clip:
        assert instance.box == (10, 5, 40, 30) and instance.area == 31 * 26
    else:  # the decoder's mask: cells 3..22 x 0..17 in mask cells
        assert instance.box == (6, 0, 45, 35) and instance.area == 40 * 36


@pytest.mark.parametrize("clip", [True, False])
def test_disjoint_boxes_are_duplicates_only_unclipped(clip):
    boxes = np.array([[0.0, 0.0, 30.0, 63.0], [34.0, 0.0, 63.0, 63.0]])
    backend = FakeBackend(box_spill=32)  # each mask covers the whole frame before clipping
    result = Pipeline(backend, PipelineConfig(clip_to_box=clip))(
        blank_image(), PromptSet(boxes=boxes)
    )
    if clip:
        assert result.duplicates == 0
        assert sorted(i.box for i in result.instances) == [(0, 0, 30, 63), (34, 0, 63, 63)]
    else:
        assert result.duplicates == 1 and len(result.instances) == 1


def test_box_and_point_prompts_take_their_own_mask_threshold():
    prompts = PromptSet(points=np.array([[12.0, 12.0]]), boxes=np.array([[10.0, 44.0, 30.0, 60.0]]))
    backend = _scene(box_spill=32)
    # Point masks cut above any logit (empty), box masks below any (the whole box).
    cfg = PipelineConfig(mask_threshold=20.0, box_mask_threshold=-20.0, min_area=0)
    (instance,) = Pipeline(backend, cfg)(blank_image(), prompts).instances
    assert instance.box == (10, 44, 30, 60) and instance.prompt_index == 1
    swapped = PipelineConfig(mask_threshold=-20.0, box_mask_threshold=20.0, min_area=0)
    (instance,) = Pipeline(backend, swapped)(blank_image(), prompts).instances
    assert instance.area == 64 * 64 and instance.prompt_index == 0  # the point: whole frame


# --- the torch engine end to end (random weights: shapes and invariants only) ----------


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


def test_panoptic_mode_prompts_only_things_and_instances_agree_with_the_class_map():
    from ranksam_ros.pipeline.panoptic import LABEL_DIVISOR

    road, car, person = 0, 1, 2
    semantic = np.zeros((MASK_SIZE, MASK_SIZE), np.int64)  # road everywhere ...
    semantic[4:12, 4:20] = car  # ... a car whose mask (below) spills 4 cells into road
    semantic[20:30, 24:28] = person
    car_mask = FakeObject(4, 4, 16, 20, iou=0.9)
    person_mask = FakeObject(20, 24, 30, 28, iou=0.8)
    backend = FakeBackend(
        objects=(car_mask, person_mask, FakeObject(0, 24, 8, 32, iou=0.95)),
        peaks=(Peak(road, 0, 7, 0.99), Peak(car, 2, 3, 0.9), Peak(person, 6, 6, 0.7)),
        class_names=("road", "car", "person"),
        semantic_map=semantic,
    )
    cfg = replace(_auto(), thing_classes=("car", "person"), thing_prompts="predictor")
    result = Pipeline(backend, cfg)(blank_image())
    # The road peak (top right, over an object) is never decoded: stuff takes no prompts.
    assert len(backend.decoded_points) == 2
    assert [(i.class_name, i.instance_id) for i in result.instances] == [("car", 1), ("person", 2)]
    expected_sem = np.repeat(np.repeat(semantic, 2, 0), 2, 1).astype(np.uint8)
    np.testing.assert_array_equal(result.semantic, expected_sem)
    car_inst = result.instances[0]
    assert car_inst.area == 16 * 32  # the 4 road rows of its mask are cut away
    for inst in result.instances:
        assert (result.semantic[inst.mask] == inst.class_id).all()
        assert (result.instance_ids[inst.mask] == inst.instance_id).all()
    np.testing.assert_array_equal(
        result.panoptic, expected_sem.astype(np.int32) * LABEL_DIVISOR + result.instance_ids
    )
    assert (result.panoptic[result.semantic == road] == 0).all()  # stuff: instance 0


def test_instances_mode_and_models_without_a_semantic_head_keep_the_old_output():
    backend = FakeBackend(
        objects=(FakeObject(4, 4, 16, 20),),
        peaks=(Peak(0, 2, 3, 0.9),),
        class_names=("road", "car"),
        semantic_map=np.ones((MASK_SIZE, MASK_SIZE), np.int64),
    )
    result = Pipeline(backend, replace(_auto(), mode="instances", thing_classes=("car",)))(
        blank_image()
    )
    assert result.panoptic is None and len(result.instances) == 1
    plain = FakeBackend(objects=(FakeObject(4, 4, 16, 20),), peaks=(Peak(0, 2, 3, 0.9),))
    assert Pipeline(plain, _auto())(blank_image()).panoptic is None  # panoptic, but no head
    with pytest.raises(ValueError, match="thing_classes"):
        Pipeline(backend, PipelineConfig(thing_classes=("bus",)))
