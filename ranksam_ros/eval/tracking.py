"""Tracking scores on a labelled image sequence: ground-truth tracks from label maps, motmetrics.

Ground truth: every thing class's connected components of a frame's label map
(``data/task_targets.thing_instances``, at least ``min_area`` pixels) are the objects; they are
linked to the latest objects of the same class of tracks seen in the last ``max_gap + 1``
frames by mask IoU (at least ``link_iou``) with an optimal assignment
(``scipy.optimize.linear_sum_assignment``), and an object left unlinked starts a new
ground-truth track. Two limits follow from the labels: touching objects
of one class are one component, and at low frame rates a fast object that overlaps nothing of
itself in the previous frame starts a new track.

Scores: ``motmetrics`` (py-motmetrics, the MOTChallenge definitions), class-agnostic; a
hypothesis can match a ground-truth object when their masks overlap by IoU >= ``match_iou``
(distance ``1 - IoU``). IDF1, ID switches, MOTA and MOTP (reported as mean matched IoU) are
read from its summary.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
from scipy.optimize import linear_sum_assignment

from ranksam_ros.data.task_targets import thing_instances
from ranksam_ros.node_config import TrackingConfig
from ranksam_ros.pipeline.result import Instance, Segmentation
from ranksam_ros.pipeline.tracking import Tracker

BASELINE = "fresh ids every frame (baseline)"
METRICS = (
    "idf1",
    "idp",
    "idr",
    "num_switches",
    "mota",
    "motp",
    "num_false_positives",
    "num_misses",
    "num_objects",
    "num_unique_objects",
    "mostly_tracked",
    "num_fragmentations",
    "num_frames",
)


@dataclass
class FrameObjects:
    """Objects of one frame.

    Attributes:
        ids: ``(K,)`` int64 track ids.
        masks: ``(K, H, W)`` bool.
        classes: ``(K,)`` int64 class ids.
    """

    ids: np.ndarray
    masks: np.ndarray
    classes: np.ndarray

    def __len__(self) -> int:
        return len(self.ids)

    @classmethod
    def empty(cls, hw: tuple[int, int]) -> FrameObjects:
        return cls(np.zeros(0, np.int64), np.zeros((0, *hw), bool), np.zeros(0, np.int64))


def mask_iou_matrix(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU of every pair of masks ``(K, H, W)`` x ``(M, H, W)`` bool -> ``(K, M)``."""
    if not len(a) or not len(b):
        return np.zeros((len(a), len(b)))
    flat_a = a.reshape(len(a), -1).astype(np.float32)
    flat_b = b.reshape(len(b), -1).astype(np.float32)
    inter = flat_a @ flat_b.T
    union = flat_a.sum(1)[:, None] + flat_b.sum(1)[None, :] - inter
    return np.where(union > 0, inter / np.maximum(union, 1.0), 0.0)


@dataclass
class _LastSeen:
    """A ground-truth track's latest object: id, mask ``(H, W)`` bool, class, frame index."""

    track_id: int
    mask: np.ndarray
    class_id: int
    frame: int


class GroundTruthLinker:
    """Ground-truth tracks from consecutive label maps (one call per frame, in order).

    An object continues a track seen in one of the last ``max_gap + 1`` frames: a pole that
    drops below ``min_area`` for a frame, or is hidden by a passing car, keeps its id.

    Args:
        thing_ids: Class ids whose connected components are objects.
        min_area: Smaller components are left out.
        link_iou: IoU with a track's last mask (same class) that continues it.
        max_gap: Frames a track may be missing and still be continued.
    """

    def __init__(
        self,
        thing_ids: tuple[int, ...],
        min_area: int = 64,
        link_iou: float = 0.1,
        max_gap: int = 2,
    ) -> None:
        self.thing_ids = tuple(thing_ids)
        self.min_area = min_area
        self.link_iou = link_iou
        self.max_gap = max_gap
        self.recent: list[_LastSeen] = []
        self.frame = -1
        self.next_id = 1

    def __call__(self, label: np.ndarray) -> FrameObjects:
        """Objects of label map ``(H, W)`` with ground-truth track ids."""
        self.frame += 1
        components, classes = thing_instances(label, self.thing_ids, self.min_area)
        count = len(classes)
        masks = components[None] == np.arange(1, count + 1)[:, None, None]
        ids = np.zeros(count, np.int64)
        classes = np.asarray(classes, np.int64)
        live = [r for r in self.recent if self.frame - r.frame <= self.max_gap + 1]
        if live and count:
            iou = mask_iou_matrix(np.stack([r.mask for r in live]), masks)
            iou[np.array([r.class_id for r in live])[:, None] != classes[None, :]] = 0.0
            rows, cols = linear_sum_assignment(-iou)
            for row, col in zip(rows, cols):
                if iou[row, col] >= self.link_iou:
                    ids[col] = live[row].track_id
        for col in np.flatnonzero(ids == 0):
            ids[col], self.next_id = self.next_id, self.next_id + 1
        continued = set(ids.tolist())
        self.recent = [r for r in live if r.track_id not in continued] + [
            _LastSeen(int(i), m, int(c), self.frame) for i, m, c in zip(ids, masks, classes)
        ]
        return FrameObjects(ids, masks, classes)


def hypotheses(result: Segmentation, thing_ids: tuple[int, ...]) -> FrameObjects:
    """Instances of thing classes with their ``track_id`` as ids."""
    keep = [inst for inst in result.instances if inst.class_id in thing_ids]
    if not keep:
        return FrameObjects.empty(result.source_hw)
    return FrameObjects(
        np.array([inst.track_id for inst in keep], np.int64),
        np.stack([inst.mask for inst in keep]),
        np.array([inst.class_id for inst in keep], np.int64),
    )


def fresh_ids(objects: FrameObjects, frame_index: int, per_frame: int = 100_000) -> FrameObjects:
    """The baseline without tracking: every object gets an id never used in another frame."""
    ids = frame_index * per_frame + np.arange(1, len(objects) + 1)
    return FrameObjects(ids.astype(np.int64), objects.masks, objects.classes)


class TrackingScorer:
    """A ``motmetrics`` accumulator fed with masks.

    Args:
        match_iou: Minimum mask IoU for a hypothesis to match a ground-truth object.
    """

    def __init__(self, match_iou: float = 0.5) -> None:
        import motmetrics

        self.mm = motmetrics
        self.match_iou = match_iou
        self.accumulator = motmetrics.MOTAccumulator(auto_id=True)

    def add(self, truth: FrameObjects, hyp: FrameObjects) -> None:
        """One frame: distances ``1 - IoU``, NaN (no match possible) below ``match_iou``."""
        iou = mask_iou_matrix(truth.masks, hyp.masks)
        distance = np.where(iou >= self.match_iou, 1.0 - iou, np.nan)
        self.accumulator.update(truth.ids.tolist(), hyp.ids.tolist(), distance)

    def summary(self) -> dict[str, float]:
        """:data:`METRICS` as plain numbers; ``motp`` becomes ``mean_matched_iou``."""
        handler = self.mm.metrics.create()
        frame = handler.compute(self.accumulator, metrics=list(METRICS), name="run")
        values = {name: float(frame[name].iloc[0]) for name in METRICS}
        values["mean_matched_iou"] = 1.0 - values.pop("motp")
        return values


def as_detections(truth: FrameObjects) -> Segmentation:
    """Ground-truth objects as a result without ids: what a perfect segmenter would give.

    Tracking these isolates association (motion, gates, assignment) from segmentation errors.
    """
    height, width = truth.masks.shape[1:]
    result = Segmentation.empty((height, width))
    for index, (mask, class_id) in enumerate(zip(truth.masks, truth.classes), start=1):
        ys, xs = np.nonzero(mask)
        box = (int(xs.min()), int(ys.min()), int(xs.max()), int(ys.max()))
        centre = (float(xs.mean()), float(ys.mean()))
        result.instances.append(
            Instance(index, int(class_id), "", 1.0, 1.0, box, int(mask.sum()), mask, centre, 1.0)
        )
    return result


class TrackingRun:
    """The baseline and tracker variants scored on one kind of detections.

    Args:
        variants: Row name -> tracker settings.
        things: Class ids whose instances are scored.
        match_iou: Mask IoU a match needs.
    """

    def __init__(
        self, variants: dict[str, TrackingConfig], things: tuple[int, ...], match_iou: float
    ) -> None:
        self.things = things
        self.trackers = {name: Tracker(cfg) for name, cfg in variants.items()}
        self.scorers = {name: TrackingScorer(match_iou) for name in (BASELINE, *variants)}
        self.update_ms: dict[str, list[float]] = {name: [] for name in variants}

    def add(self, index: int, stamp: float, result: Segmentation, truth: FrameObjects) -> None:
        """Frame ``index`` at ``stamp`` seconds: its result and its ground truth."""
        self.scorers[BASELINE].add(truth, fresh_ids(hypotheses(result, self.things), index))
        for name, tracker in self.trackers.items():  # each rewrites the result's track ids
            started = time.perf_counter()
            tracker.update(result, stamp)
            self.update_ms[name].append((time.perf_counter() - started) * 1000.0)
            self.scorers[name].add(truth, hypotheses(result, self.things))

    def rows(self) -> dict[str, dict[str, float]]:
        """Row name -> scores (and, for trackers, ``tracking_ms_mean`` / ``_p95``)."""
        rows = {}
        for name, scorer in self.scorers.items():
            rows[name] = scorer.summary()
            if self.update_ms.get(name):
                rows[name]["tracking_ms_mean"] = float(np.mean(self.update_ms[name]))
                rows[name]["tracking_ms_p95"] = float(np.percentile(self.update_ms[name], 95))
        return rows
