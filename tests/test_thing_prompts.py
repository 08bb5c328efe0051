"""Panoptic things from the semantic head's class map (``thing_prompts``, ``thing_masks``)."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
from fakes import MASK_SIZE, FakeBackend, FakeObject, blank_image

from ranksam_ros.config import PipelineConfig, PromptConfig
from ranksam_ros.pipeline.panoptic import thing_centres
from ranksam_ros.pipeline.pipeline import Pipeline
from ranksam_ros.pipeline.prompts import find_peaks

ROAD, CAR, POLE = 0, 1, 2


def _one_hot(classes: np.ndarray, count: int = 3) -> np.ndarray:
    return (np.arange(count)[:, None, None] == classes[None]).astype(np.float32)


def _scene() -> np.ndarray:
    """A square car, two square cars touching through a narrow neck, a pole one cell wide."""
    classes = np.full((40, 40), ROAD)
    classes[5:15, 5:15] = CAR
    classes[20:28, 2:10] = CAR
    classes[20:28, 14:22] = CAR
    classes[23:25, 10:14] = CAR  # the neck
    classes[5:36, 30] = POLE
    return classes


def test_one_prompt_per_thing_region_and_one_per_object_across_a_neck():
    maps, boxes = thing_centres(_one_hot(_scene()), np.array([False, True, True]), factor=1)
    assert maps.shape == (3, 40, 40) and not maps[ROAD].any()
    peaks = find_peaks(maps, PromptConfig(smoothing_sigma=0.0, min_spacing=2), input_size=320)
    found = sorted((int(c), int(r), int(k)) for c, (r, k) in zip(peaks.classes, peaks.cells))
    cars = [(r, k) for c, r, k in found if c == CAR]
    poles = [(r, k) for c, r, k in found if c == POLE]
    assert len(cars) == 3 and len(poles) == 1  # the pole's plateau has one peak
    assert any(9 <= r <= 10 and 9 <= k <= 10 for r, k in cars)  # the square's centre
    assert any(23 <= r <= 24 and 5 <= k <= 6 for r, k in cars)  # both ends of the dumbbell
    assert any(23 <= r <= 24 and 17 <= k <= 18 for r, k in cars)
    assert 18 <= poles[0][0] <= 22 and poles[0][1] == 30  # near the pole's middle
    # Each cell knows the box of its region; the dumbbell is one region, one box.
    assert boxes[9, 9].tolist() == [5, 5, 14, 14] and boxes[25, 5].tolist() == [2, 20, 21, 27]
    assert boxes[10, 30].tolist() == [30, 5, 30, 35] and np.isnan(boxes[0, 0]).all()


def test_maps_are_pooled_to_the_confidence_grid_and_ignore_nan():
    probs = np.repeat(np.repeat(_one_hot(_scene()), 2, axis=1), 2, axis=2)
    probs[:, 0, 0] = np.nan
    maps, _ = thing_centres(probs, np.array([False, True, True]), factor=2)
    assert maps.shape == (3, 40, 40) and np.isfinite(maps).all()
    assert maps.max() <= 1.0 and maps.min() >= 0.0


def test_semantic_thing_prompts_skip_the_prompt_predictor():
    semantic = np.zeros((MASK_SIZE, MASK_SIZE), np.int64)
    semantic[4:12, 4:20] = CAR
    car = FakeObject(4, 4, 12, 20, iou=0.9)
    backend = FakeBackend(
        objects=(car,), class_names=("road", "car", "pole"), semantic_map=semantic
    )

    def no_predictor(*_):
        raise AssertionError("the prompt predictor ran")

    backend.predict_prompts = no_predictor
    prompts = PromptConfig(smoothing_sigma=0.0, threshold=0.3, decode_batch=1)
    cfg = PipelineConfig(prompts=prompts, thing_classes=("car", "pole"), thing_prompts="centre")
    pipeline = Pipeline(backend, cfg)
    assert not pipeline.needs_prompt_maps(auto=True)
    result = pipeline(blank_image())
    assert len(backend.decoded_points) == 1  # one region, one prompt
    assert [(i.class_name, i.instance_id) for i in result.instances] == [("car", 1)]
    assert "prompt_predictor" not in result.timings_ms
    # The predictor source still needs (and runs) the predictor.
    assert Pipeline(backend, replace(cfg, thing_prompts="predictor")).needs_prompt_maps(True)


def test_unknown_thing_prompt_source_is_refused():
    with pytest.raises(ValueError, match="thing_prompts"):
        PipelineConfig(thing_prompts="centres")


def test_region_things_need_no_decoder_and_follow_the_class_map():
    semantic = np.zeros((MASK_SIZE, MASK_SIZE), np.int64)
    semantic[4:12, 4:20] = CAR
    semantic[4:12, 20:24] = CAR  # touches the first car: one region, one instance
    semantic[20:30, 26:28] = POLE
    backend = FakeBackend(objects=(), class_names=("road", "car", "pole"), semantic_map=semantic)
    backend.predict_prompts = None  # would fail if called
    cfg = PipelineConfig(thing_classes=("car", "pole"), thing_masks="regions")
    pipeline = Pipeline(backend, cfg)
    assert not pipeline.needs_prompt_maps(auto=True)
    result = pipeline(blank_image())
    assert backend.decoded_points == [] and "decoder" not in result.timings_ms
    assert sorted(i.class_name for i in result.instances) == ["car", "pole"]
    car = next(i for i in result.instances if i.class_name == "car")
    assert car.area == 8 * 2 * 20 * 2 and car.box == (8, 8, 47, 23)
    assert 0.5 < car.score <= 1.0  # the mean class probability (edges are blurred by upscaling)
    for inst in result.instances:
        assert (result.instance_ids[inst.mask] == inst.instance_id).all()
        assert (result.semantic[inst.mask] == inst.class_id).all()
    expected = {0} | {i.class_id * 1000 + i.instance_id for i in result.instances}
    assert set(np.unique(result.panoptic).tolist()) == expected


def test_region_things_leave_given_masks_alone():
    from ranksam_ros.pipeline.pipeline import PromptSet

    semantic = np.zeros((MASK_SIZE, MASK_SIZE), np.int64)
    semantic[4:12, 4:20] = CAR
    car = FakeObject(4, 4, 12, 12, iou=0.9)  # a given click covers the left half
    backend = FakeBackend(objects=(car,), class_names=("road", "car"), semantic_map=semantic)
    cfg = PipelineConfig(thing_classes=("car",), thing_masks="regions")
    pipeline = Pipeline(backend, cfg)
    frame = pipeline.encode(blank_image(), need_maps=False)
    result = pipeline.segment(frame, PromptSet(points=[[12.0, 12.0]]), auto=True)
    assert sorted(i.prompt_given for i in result.instances) == [False, True]
    given = next(i for i in result.instances if i.prompt_given)
    region = next(i for i in result.instances if not i.prompt_given)
    scores = [i.score for i in result.instances]
    assert scores == sorted(scores, reverse=True)  # ids follow the score
    assert not (given.mask & region.mask).any()
    assert given.area + region.area == 8 * 2 * 16 * 2


def test_dense_classes_is_the_arg_max_of_the_upscaled_probabilities():
    from ranksam_ros.graph.preprocess import preprocess
    from ranksam_ros.pipeline.panoptic import dense_classes
    from ranksam_ros.pipeline.postprocess import upscale_logits

    probs = np.random.default_rng(0).random((11, 24, 24)).astype(np.float32)
    _, geometry = preprocess(np.zeros((36, 48, 3), np.uint8), 96, (0, 0, 0), (1, 1, 1))
    classes, confidence = dense_classes(probs, geometry)
    upscaled = upscale_logits(probs, geometry)
    np.testing.assert_array_equal(classes, upscaled.argmax(axis=0))
    np.testing.assert_allclose(confidence, upscaled.max(axis=0))


def test_box_thing_prompts_give_sam_each_region_box():
    semantic = np.zeros((MASK_SIZE, MASK_SIZE), np.int64)
    semantic[4:12, 4:20] = CAR  # grid cells (8 input px) rows 1-2, columns 1-4
    backend = FakeBackend(objects=(), class_names=("road", "car"), semantic_map=semantic)
    prompts = PromptConfig(smoothing_sigma=0.0, threshold=0.3, decode_batch=1)
    cfg = PipelineConfig(prompts=prompts, thing_classes=("car",), thing_prompts="box")
    result = Pipeline(backend, cfg)(blank_image())
    assert backend.decoded_points == []  # a box, not a click
    assert backend.decoded_boxes == [(8.0, 8.0, 39.0, 23.0)]  # the region's cells, inclusive
    (car,) = result.instances
    assert car.class_name == "car" and car.box == (8, 8, 39, 23)
    assert car.area == 16 * 32  # the box's mask, cut to the class map


@pytest.mark.parametrize("things", ["box", "centre", "regions"])
def test_a_frame_without_things_decodes_nothing_and_stays_well_formed(things):
    semantic = np.zeros((MASK_SIZE, MASK_SIZE), np.int64)  # road only
    backend = FakeBackend(objects=(), class_names=("road", "car"), semantic_map=semantic)
    option = {"thing_masks": "regions"} if things == "regions" else {"thing_prompts": things}
    result = Pipeline(backend, PipelineConfig(thing_classes=("car",), **option))(blank_image())
    assert backend.decoded_points == [] and result.instances == []
    assert not result.instance_ids.any() and (result.panoptic == 0).all()
    assert (result.semantic == ROAD).all()


def test_noisy_probabilities_give_no_extra_peaks_inside_a_region():
    rng = np.random.default_rng(0)
    probs = _one_hot(_scene()) * rng.uniform(0.6, 1.0, size=(1, 40, 40)).astype(np.float32)
    maps, _ = thing_centres(probs, np.array([False, True, True]), factor=1)
    peaks = find_peaks(maps, PromptConfig(smoothing_sigma=0.0, min_spacing=2), input_size=320)
    assert sorted(peaks.classes.tolist()) == [CAR, CAR, CAR, POLE]  # as without noise


def test_box_prompts_skip_the_padding_and_cells_outside_regions():
    from ranksam_ros.graph.preprocess import preprocess
    from ranksam_ros.pipeline.panoptic import inside_image, one_per_box

    _, geometry = preprocess(np.zeros((32, 64, 3), np.uint8), 64, (0, 0, 0), (1, 1, 1))
    inside = inside_image(np.ones((2, 8, 8), np.float32), geometry)
    assert inside[:, :4].all() and not inside[:, 4:].any()  # 64x32 fills grid rows 0-3
    boxes = np.full((8, 8, 4), np.nan)
    boxes[1:3, 1:5] = (1, 1, 4, 2)  # one region of 8 cells
    every_cell = PromptConfig(
        threshold=0.0, smoothing_sigma=0.0, min_spacing=0, cross_class_spacing=0
    )
    found = find_peaks(np.ones((1, 8, 8), np.float32), every_cell, input_size=64)
    assert len(found) == 64 and len(one_per_box(found, boxes, 64)) == 1


def test_region_things_honour_max_instances_and_score_threshold():
    semantic = np.zeros((MASK_SIZE, MASK_SIZE), np.int64)
    for left in (2, 12, 22):
        semantic[4:10, left : left + 6] = CAR  # three separate cars
    backend = FakeBackend(objects=(), class_names=("road", "car"), semantic_map=semantic)
    base = PipelineConfig(thing_classes=("car",), thing_masks="regions")
    assert len(Pipeline(backend, base)(blank_image()).instances) == 3
    assert len(Pipeline(backend, replace(base, max_instances=2))(blank_image()).instances) == 2
    strict = replace(base, score_threshold=0.999)  # blurred edges keep the mean below 1
    assert Pipeline(backend, strict)(blank_image()).instances == []
