"""Tracking scores: ground-truth tracks linked from label maps, motmetrics on masks."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("motmetrics")

from ranksam_ros.eval.tracking import (  # noqa: E402
    FrameObjects,
    GroundTruthLinker,
    TrackingScorer,
    fresh_ids,
    mask_iou_matrix,
)

H, W = 60, 120
CAR, PERSON, ROAD = 8, 9, 3


def _label(t: int) -> np.ndarray:
    """A car driving right 6 px per frame, a person standing still who leaves at t = 3."""
    label = np.full((H, W), ROAD, np.uint8)
    label[20:40, 10 + 6 * t : 40 + 6 * t] = CAR
    if t < 3:
        label[5:50, 90:100] = PERSON
    return label


@pytest.mark.parametrize("max_gap, same", [(2, True), (1, False)])
def test_ground_truth_tracks_follow_overlapping_components(max_gap, same):
    linker = GroundTruthLinker((CAR, PERSON), min_area=10, max_gap=max_gap)
    frames = [linker(_label(t)) for t in range(5)]
    car_ids = {int(f.ids[f.classes == CAR][0]) for f in frames}
    person_ids = {int(f.ids[f.classes == PERSON][0]) for f in frames[:3]}
    assert len(car_ids) == 1 and len(person_ids) == 1 and car_ids != person_ids
    assert [len(f) for f in frames] == [2, 2, 2, 1, 1]
    back = _label(5)
    back[5:50, 90:100] = PERSON  # the person is back after two frames away
    returned = linker(back)
    assert (int(returned.ids[returned.classes == PERSON][0]) in person_ids) is same


def test_a_jump_without_overlap_starts_a_new_ground_truth_track():
    linker = GroundTruthLinker((CAR,), min_area=10)
    first = linker(_label(0))
    far = np.full((H, W), ROAD, np.uint8)
    far[20:40, 80:110] = CAR  # no pixel in common with frame 0's car
    assert linker(far).ids[0] != first.ids[0]


def test_iou_matrix():
    a = np.zeros((2, 4, 4), bool)
    a[0, :2], a[1] = True, True
    b = np.zeros((1, 4, 4), bool)
    b[0, :1] = True
    np.testing.assert_allclose(mask_iou_matrix(a, b), [[0.5], [0.25]])
    assert mask_iou_matrix(a, b[:0]).shape == (2, 0)


def _score(truth_frames, hyp_frames) -> dict:
    scorer = TrackingScorer(match_iou=0.5)
    for truth, hyp in zip(truth_frames, hyp_frames):
        scorer.add(truth, hyp)
    return scorer.summary()


def test_perfect_tracks_score_one_and_fresh_ids_switch_every_frame():
    linker = GroundTruthLinker((CAR, PERSON), min_area=10)
    truth = [linker(_label(t)) for t in range(5)]
    perfect = [FrameObjects(f.ids + 100, f.masks, f.classes) for f in truth]
    scores = _score(truth, perfect)
    assert scores["idf1"] == 1.0 and scores["num_switches"] == 0 and scores["mota"] == 1.0
    assert scores["mean_matched_iou"] == pytest.approx(1.0)
    baseline = _score(truth, [fresh_ids(f, i) for i, f in enumerate(truth)])
    # Every frame after the first re-identifies every object still there: 1 + 1 + 1 + 1 + 0.
    assert baseline["num_switches"] == 6 and baseline["idf1"] < 0.5
    assert baseline["mota"] < scores["mota"]


def test_a_swapped_id_is_one_switch_and_misses_are_counted():
    linker = GroundTruthLinker((CAR, PERSON), min_area=10)
    truth = [linker(_label(t)) for t in range(3)]
    hyps = [FrameObjects(f.ids.copy(), f.masks, f.classes) for f in truth]
    hyps[2].ids[:] = hyps[2].ids[::-1]  # the two objects trade ids in the last frame
    swapped = _score(truth, hyps)
    assert swapped["num_switches"] == 2
    dropped = [hyps[0], FrameObjects.empty((H, W)), hyps[0]]
    missed = _score(truth[:1] * 3, dropped)
    assert missed["num_misses"] == 2 and missed["num_switches"] == 0


def test_tracking_run_scores_trackers_against_the_baseline_on_the_same_frames():
    from ranksam_ros.eval.tracking import BASELINE, TrackingRun, as_detections
    from ranksam_ros.node_config import TrackingConfig

    linker = GroundTruthLinker((CAR, PERSON), min_area=10)
    run = TrackingRun({"tracker": TrackingConfig()}, (CAR, PERSON), match_iou=0.5)
    for t in range(5):
        truth = linker(_label(t))
        run.add(t, float(t), as_detections(truth), truth)
    rows = run.rows()
    assert rows["tracker"]["idf1"] == 1.0 and rows["tracker"]["num_switches"] == 0
    assert rows[BASELINE]["num_switches"] == 6 and "tracking_ms_mean" not in rows[BASELINE]
    assert rows["tracker"]["tracking_ms_mean"] > 0
