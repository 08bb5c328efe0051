"""The numpy tracker: stable ids, new ids, lost tracks kept then retired, motion, class gates."""

from __future__ import annotations

import numpy as np
import pytest
from fakes import FakeBackend, FakeObject, Peak, blank_image

from ranksam_ros.config import PipelineConfig, PromptConfig
from ranksam_ros.node_config import TrackingConfig
from ranksam_ros.pipeline.pipeline import Pipeline
from ranksam_ros.pipeline.result import Instance, Segmentation
from ranksam_ros.pipeline.tracking import MaskCrop, Tracker

H, W = 120, 200


def _instance(x0: int, y0: int, width: int, height: int, class_id: int = 0) -> Instance:
    mask = np.zeros((H, W), bool)
    mask[y0 : y0 + height, x0 : x0 + width] = True
    box = (x0, y0, x0 + width - 1, y0 + height - 1)
    return Instance(0, class_id, "", 1.0, 1.0, box, int(mask.sum()), mask, (0.0, 0.0), 1.0)


def _frame(*instances: Instance) -> Segmentation:
    seg = Segmentation.empty((H, W))
    seg.instances = list(instances)
    for index, inst in enumerate(seg.instances, start=1):
        inst.instance_id = index
    return seg


def _ids(seg: Segmentation) -> list[int]:
    return [inst.track_id for inst in seg.instances]


def _box(mask: np.ndarray) -> tuple[int, int, int, int]:
    xs, ys = np.flatnonzero(mask.any(axis=0)), np.flatnonzero(mask.any(axis=1))
    return int(xs[0]), int(ys[0]), int(xs[-1]), int(ys[-1])


def test_mask_crop_iou_equals_the_full_frame_iou_of_the_moved_mask():
    rng = np.random.default_rng(3)
    for _ in range(20):
        a, b = np.zeros((H, W), bool), np.zeros((H, W), bool)
        a[30:60, 40:100] = rng.random((30, 60)) > 0.5  # shifts of up to 25 px stay inside
        b[20:70, 50:110] = rng.random((50, 60)) > 0.5
        dx, dy = (int(v) for v in rng.integers(-25, 26, size=2))
        moved = np.roll(a, (dy, dx), axis=(0, 1))
        truth = (moved & b).sum() / (moved | b).sum()
        iou = MaskCrop.of(a, _box(a)).iou(MaskCrop.of(b, _box(b)), dx, dy)
        assert iou == pytest.approx(truth)
    whole = MaskCrop.of(np.ones((H, W), bool), (0, 0, W - 1, H - 1))
    assert whole.iou(whole) == 1.0 and whole.iou(whole, W, 0) == 0.0  # moved off: no overlap


def test_ids_stay_new_objects_get_new_ids_and_lost_ones_retire():
    tracker = Tracker(TrackingConfig(max_missed_frames=2))
    a = lambda t: _instance(10 + 5 * t, 20, 30, 30)  # noqa: E731
    b = lambda t: _instance(150 - 4 * t, 60, 20, 40)  # noqa: E731
    seen = []
    for t in range(4):
        seg = _frame(a(t), b(t)) if t else _frame(a(t))  # b appears at t = 1
        tracker.update(seg, stamp=0.1 * t)
        seen.append(_ids(seg))
    assert seen == [[1], [1, 2], [1, 2], [1, 2]]
    # b is hidden for two frames (kept), then back where its motion says: the same id.
    for t in (4, 5):
        seg = _frame(a(t))
        stats = tracker.update(seg, stamp=0.1 * t)
        assert _ids(seg) == [1] and stats.live == 2
    seg = _frame(a(6), b(6))
    tracker.update(seg, stamp=0.6)
    assert _ids(seg) == [1, 2]
    # Hidden for three frames (> max_missed_frames): retired, a new id when it returns.
    for t in (7, 8, 9):
        stats = tracker.update(_frame(a(t)), stamp=0.1 * t)
    assert stats.retired == 1 and stats.live == 1
    seg = _frame(a(10), b(10))
    stats = tracker.update(seg, stamp=1.0)
    assert _ids(seg) == [1, 3] and stats.started == 1


def test_instance_order_does_not_change_ids():
    tracker = Tracker()
    tracker.update(_frame(_instance(10, 10, 20, 20), _instance(100, 50, 30, 30)), stamp=0.0)
    seg = _frame(_instance(102, 51, 30, 30), _instance(11, 10, 20, 20))
    tracker.update(seg, stamp=0.1)
    assert _ids(seg) == [2, 1]


@pytest.mark.parametrize("motion, switched", [("constant_velocity", False), ("none", True)])
def test_constant_velocity_keeps_an_id_a_nearby_object_would_take(motion, switched):
    """The object moves 15 px per frame; at frame 2 a look-alike appears where it was."""
    tracker = Tracker(TrackingConfig(motion=motion))
    tracker.update(_frame(_instance(100, 40, 20, 20)), stamp=0.0)
    tracker.update(_frame(_instance(115, 40, 20, 20)), stamp=0.1)
    seg = _frame(_instance(130, 40, 20, 20), _instance(110, 40, 20, 20))
    tracker.update(seg, stamp=0.2)
    mover, newcomer = _ids(seg)
    assert (mover != 1) is switched and {mover, newcomer} == {1, 2}


def test_prediction_uses_stamps_so_dropped_frames_do_not_lose_fast_objects():
    tracker = Tracker(TrackingConfig(max_distance=0.5))
    for t in range(3):  # 10 px per 0.1 s, boxes 20 x 20 (diagonal 28 px)
        tracker.update(_frame(_instance(20 + 10 * t, 40, 20, 20)), stamp=0.1 * t)
    seg = _frame(_instance(20 + 10 * 6, 40, 20, 20))  # three frames dropped: 40 px further
    tracker.update(seg, stamp=0.6)
    assert _ids(seg) == [1]


def test_class_gating():
    for gating, expected in ((True, [2]), (False, [1])):
        tracker = Tracker(TrackingConfig(class_gating=gating))
        tracker.update(_frame(_instance(50, 50, 30, 30, class_id=8)), stamp=0.0)
        seg = _frame(_instance(51, 50, 30, 30, class_id=9))
        tracker.update(seg, stamp=0.1)
        assert _ids(seg) == expected


def test_far_objects_never_match():
    tracker = Tracker()
    tracker.update(_frame(_instance(10, 10, 20, 20)), stamp=0.0)
    seg = _frame(_instance(150, 80, 20, 20))
    tracker.update(seg, stamp=0.1)
    assert _ids(seg) == [2]


def test_a_stamp_going_backwards_resets_and_empty_frames_are_fine():
    tracker = Tracker()
    tracker.update(_frame(_instance(10, 10, 20, 20), _instance(60, 10, 20, 20)), stamp=5.0)
    assert tracker.update(_frame(), stamp=5.1).live == 2  # nothing seen: both coast
    seg = _frame(_instance(60, 10, 20, 20))
    stats = tracker.update(seg, stamp=1.0)  # a bag started again
    assert stats.reset and tracker.resets == 1 and _ids(seg) == [1]
    seg = _frame(_instance(60, 10, 20, 20))
    tracker.update(seg, stamp=1.0)  # the same stamp again: no speed from a zero interval
    assert _ids(seg) == [1] and tracker.tracks[0].velocity is None


def test_pipeline_results_keep_their_ids_frame_after_frame():
    objects = (FakeObject(2, 2, 10, 10), FakeObject(16, 16, 28, 30))
    backend = FakeBackend(objects=objects, peaks=(Peak(0, 1, 1, 0.9), Peak(0, 5, 5, 0.8)))
    exact = PromptConfig(smoothing_sigma=0.0, min_spacing=0, decode_batch=1)  # peaks as given
    pipeline = Pipeline(backend, PipelineConfig(prompts=exact, min_area=0))
    tracker = Tracker()
    ids = []
    for t in range(3):
        result = pipeline(blank_image())
        tracker.update(result, stamp=float(t))
        ids.append(sorted(_ids(result)))
    assert ids == [[1, 2]] * 3
    untracked = pipeline(blank_image())
    assert _ids(untracked) == [0, 0]  # the pipeline itself never tracks
