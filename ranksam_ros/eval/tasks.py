"""Per-task scores of a multi-task adapter set, and the multi-task gain Δm against a baseline.

* ``semantic``: mIoU of the arg-max class map;
* ``boundary``: F1 of predicted boundary pixels (probability > 0.5) against the label's class
  boundaries, each matched within :data:`BOUNDARY_TOLERANCE_PX`;
* ``centre``: F1 of detected instance centres (local maxima of the heatmap above
  :data:`CENTRE_THRESHOLD`) matched one to one (Hungarian assignment) to the true centres
  within :data:`CENTRE_RADIUS_PX`.

All three are higher-is-better, so ``Δm = mean_t (M_t - M_base,t) / M_base,t`` (in %).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from scipy import ndimage
from scipy.optimize import linear_sum_assignment

from ranksam_ros.config import DataConfig
from ranksam_ros.data.segments import interior_point
from ranksam_ros.data.task_targets import boundary_target, thing_instances
from ranksam_ros.eval.confusion import ConfusionMatrix
from ranksam_ros.graph.preprocess import ResizeInfo
from ranksam_ros.pipeline.postprocess import upscale_logits

BOUNDARY_TOLERANCE_PX = 2.0
CENTRE_THRESHOLD = 0.3
CENTRE_RADIUS_PX = 10.0


class TaskScores:
    """Accumulates the per-task scores over frames.

    Args:
        dataset: Class names, ignore label and thing classes of the labels.
    """

    def __init__(self, dataset: DataConfig) -> None:
        self.dataset = dataset
        self.things = tuple(dataset.class_names.index(n) for n in dataset.thing_classes)
        self.confusion = ConfusionMatrix(dataset.num_classes)
        self.counts = {"boundary": np.zeros(3), "centre": np.zeros(3)}  # tp, predicted, true

    def add(self, outputs: dict[str, np.ndarray], label: np.ndarray, geometry: ResizeInfo) -> None:
        """One frame: task logits ``{task: (C, m, m)}`` and its label ``(H, W)``."""
        data = self.dataset
        if "semantic" in outputs:
            classes = np.argmax(upscale_logits(outputs["semantic"], geometry), axis=0)
            truth = np.where(label == data.ignore_label, 255, label)
            self.confusion.add(truth, classes.astype(np.uint8))
        if "boundary" in outputs:
            prob = _sigmoid(upscale_logits(outputs["boundary"], geometry)[0])
            truth = boundary_target(label, data.num_classes)
            self.counts["boundary"] += _boundary_counts(prob > 0.5, truth)
        if "centre" in outputs:
            heat = _sigmoid(outputs["centre"][:1])
            found = _peaks(heat[0], geometry)
            instances, _ = thing_instances(label, self.things)
            true = _centres(instances)
            self.counts["centre"] += _match_counts(found, true, CENTRE_RADIUS_PX)

    def scores(self) -> dict[str, float]:
        """``{task: score}`` for the tasks seen so far."""
        out = {}
        if self.confusion.matrix.any():
            out["semantic"] = float(np.nanmean(self.confusion.class_iou()))
        for task, (tp, predicted, true) in self.counts.items():
            if predicted or true:
                out[task] = float(2 * tp / max(predicted + true, 1))
        return out


def delta_m(scores: dict[str, float], baseline: dict[str, float]) -> float:
    """Mean relative change over the baseline's tasks, in % (all scores higher-is-better)."""
    return float(100 * np.mean([(scores[t] - baseline[t]) / baseline[t] for t in baseline]))


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-np.clip(x, -30, 30)))


def _boundary_counts(pred: np.ndarray, truth: np.ndarray) -> np.ndarray:
    """``(matched, predicted, true)`` boundary pixels, matched within the tolerance."""
    valid = truth >= 0
    pred, true = pred & valid, (truth > 0.5) & valid
    if not pred.any() or not true.any():
        return np.array([0.0, pred.sum(), true.sum()])
    near_true = ndimage.distance_transform_edt(~true) <= BOUNDARY_TOLERANCE_PX
    near_pred = ndimage.distance_transform_edt(~pred) <= BOUNDARY_TOLERANCE_PX
    # F1 from precision and recall: matched counts both ways, averaged.
    matched = 0.5 * ((pred & near_true).sum() + (true & near_pred).sum())
    return np.array([matched, pred.sum(), true.sum()], float)


def _peaks(heat: np.ndarray, geometry: ResizeInfo) -> np.ndarray:
    """Local maxima above the threshold on the mask grid -> ``(K, 2)`` source (x, y)."""
    local = heat == ndimage.maximum_filter(heat, size=3, mode="constant")
    rows, cols = np.nonzero(local & (heat > CENTRE_THRESHOLD))
    cell = geometry.input_size / heat.shape[-1]
    xy = np.stack([(cols + 0.5) * cell, (rows + 0.5) * cell], axis=1)
    return geometry.to_source(xy) if len(xy) else np.zeros((0, 2))


def _centres(instances: np.ndarray) -> np.ndarray:
    """The most interior pixel of each instance ``(K, 2)`` (x, y), as the targets place it."""
    points = []
    for index, slices in enumerate(ndimage.find_objects(instances), start=1):
        if slices is not None:
            box = (slices[1].start, slices[0].start, slices[1].stop - 1, slices[0].stop - 1)
            points.append(interior_point(instances == index, box))
    return np.asarray(points, float).reshape(-1, 2)


def _match_counts(found: np.ndarray, true: np.ndarray, radius: float) -> np.ndarray:
    """``(matched, found, true)`` with a one-to-one assignment within ``radius``."""
    if not len(found) or not len(true):
        return np.array([0.0, len(found), len(true)])
    cost = np.linalg.norm(found[:, None] - true[None], axis=-1)
    rows, cols = linear_sum_assignment(cost)
    return np.array([float((cost[rows, cols] <= radius).sum()), len(found), len(true)])


def evaluate_tasks(model, folder, indices: Sequence[int], dataset: DataConfig) -> dict:
    """Scores of a :class:`~ranksam_ros.modeling.multitask.MultiTaskSam` on frames ``indices``.

    Returns:
        ``{"scores": {task: score}, "seconds_per_image": float}``.
    """
    import time

    import torch

    from ranksam_ros.graph.preprocess import preprocess

    arch = model.base.arch
    scores, started = TaskScores(dataset), time.perf_counter()
    with torch.inference_mode():
        for index in indices:
            image, label = folder[index]
            tensor, geometry = preprocess(image, arch.img_size, arch.pixel_mean, arch.pixel_std)
            outputs = model(torch.from_numpy(tensor))
            scores.add({k: v[0].numpy() for k, v in outputs.items()}, label, geometry)
    return {
        "scores": scores.scores(),
        "seconds_per_image": (time.perf_counter() - started) / max(len(indices), 1),
    }
