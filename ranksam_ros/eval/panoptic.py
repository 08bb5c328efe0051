"""``ranksam eval --prompts panoptic``: panoptic quality, semantic mIoU and boundary F-score.

Ground truth from the label maps: stuff classes are one segment each per frame, thing
classes are their connected components (the same rule the task targets use), the ignore
label is left out. Predictions come from the pipeline as configured (``--set mode=panoptic``,
the default with a semantic head, or ``mode=instances``): its dense class map for stuff, its
instance ids on thing pixels. PQ, SQ and RQ are torchmetrics' ``PanopticQuality``; the
boundary F-score is the mean over classes of the F1 of class-boundary pixels matched within a
tolerance (Csurka et al.'s BF score).
"""

from __future__ import annotations

import time
from dataclasses import replace

import numpy as np
from scipy import ndimage

from ranksam_ros.backends import Backend, create_backend
from ranksam_ros.config import PipelineConfig
from ranksam_ros.data.task_targets import thing_instances
from ranksam_ros.eval.confusion import ConfusionMatrix
from ranksam_ros.eval.frames import check_model_classes, degraded_frames, open_frames
from ranksam_ros.eval.options import EvalOptions
from ranksam_ros.pipeline.pipeline import Pipeline

BOUNDARY_TOLERANCE = 0.0075  # of the image diagonal (BF score's default; ~4.5 px at 480x360)


def panoptic_pairs(semantic: np.ndarray, instances: np.ndarray, things: np.ndarray) -> np.ndarray:
    """``(H, W, 2)`` (class, instance) pairs: instance ids only on thing-class pixels."""
    is_thing = things[np.minimum(semantic, len(things) - 1)] & (semantic < len(things))
    return np.stack([semantic.astype(np.int64), np.where(is_thing, instances, 0)], axis=-1)


def truth_pairs(label: np.ndarray, things: np.ndarray, ignore: int) -> np.ndarray:
    """Ground-truth pairs of a label map: thing instances = connected components."""
    ids, _ = thing_instances(label, tuple(np.flatnonzero(things)))
    pairs = panoptic_pairs(label, ids, things)
    pairs[label == ignore, 0] = ignore
    return pairs


def boundary_f1(truth: np.ndarray, pred: np.ndarray, num_classes: int, ignore: int) -> float:
    """Mean over the classes present of the boundary F1 of their masks (ignored pixels out)."""
    valid = truth != ignore
    tolerance = BOUNDARY_TOLERANCE * float(np.hypot(*truth.shape))
    scores = []
    for c in range(num_classes):
        t, p = (truth == c) & valid, (pred == c) & valid
        if not t.any() and not p.any():
            continue
        tb, pb = _boundary(t), _boundary(p)
        if not tb.any() or not pb.any():
            scores.append(0.0)
            continue
        precision = (ndimage.distance_transform_edt(~tb)[pb] <= tolerance).mean()
        recall = (ndimage.distance_transform_edt(~pb)[tb] <= tolerance).mean()
        total = precision + recall
        scores.append(0.0 if total == 0 else float(2 * precision * recall / total))
    return float(np.mean(scores)) if scores else float("nan")


def _mean(values: np.ndarray) -> float:
    return float(np.nanmean(values)) if np.isfinite(values).any() else float("nan")


def _boundary(mask: np.ndarray) -> np.ndarray:
    return mask & ~ndimage.binary_erosion(mask, border_value=1)


def evaluate_panoptic(
    options: EvalOptions, backend: Backend | None = None, cfg: PipelineConfig | None = None
) -> dict:
    """Panoptic, semantic and boundary scores of the pipeline on a labelled folder."""
    import torch
    from torchmetrics.detection import PanopticQuality

    dataset = options.dataset
    # Things are the data's countable classes: the pipeline prompts those and no others.
    cfg = replace(cfg or PipelineConfig(), thing_classes=tuple(dataset.thing_classes))
    folder, indices = open_frames(options)
    count = len(indices)
    backend = backend or create_backend(options.backend_config())
    check_model_classes(backend.info.class_names, dataset)
    pipeline = Pipeline(backend, cfg)
    things = np.array([name in dataset.thing_classes for name in dataset.class_names])
    quality = PanopticQuality(
        things=set(np.flatnonzero(things).tolist()),
        stuffs=set(np.flatnonzero(~things).tolist()),
        return_sq_and_rq=True,
        return_per_class=True,
        allow_unknown_preds_category=True,
    )
    confusion = ConfusionMatrix(dataset.num_classes)
    seen = np.zeros(dataset.num_classes, bool)  # classes in truth or prediction: PQ averages these
    boundaries, decoded, started = [], [], time.perf_counter()
    for image, label in degraded_frames(options, folder, indices, "eval panoptic"):
        result = pipeline(image)
        decoded.append(result.prompts_decoded)
        truth = label.copy()
        truth[truth == dataset.ignore_label] = 255
        confusion.add(truth, result.semantic)
        boundaries.append(
            boundary_f1(label, result.semantic, dataset.num_classes, dataset.ignore_label)
        )
        pred = panoptic_pairs(result.semantic, result.instance_ids, things)
        target = truth_pairs(label, things, dataset.ignore_label)
        for pairs in (pred, target):
            classes = np.unique(pairs[..., 0])
            seen[classes[classes < dataset.num_classes]] = True
        quality.update(torch.from_numpy(pred)[None], torch.from_numpy(target)[None])
    # (C, 3): PQ, SQ, RQ per class, things first then stuff; classes never seen score 0 there,
    # so they are left out of the means (as panopticapi does).
    per_class = quality.compute().numpy()
    order = sorted(np.flatnonzero(things)) + sorted(np.flatnonzero(~things))
    per_class[~seen[order]] = np.nan
    names = [dataset.class_names[i] for i in order]
    n_things = int(things.sum())
    iou = confusion.class_iou()
    return {
        "model": backend.info.model_id,
        "prompts": "panoptic",
        "mode": "panoptic" if pipeline.panoptic else "instances",
        "degrade": options.degrade,
        "sequences": list(options.sequences),
        "images": count,
        "pq": _mean(per_class[:, 0]),
        "sq": _mean(per_class[:, 1]),
        "rq": _mean(per_class[:, 2]),
        "pq_things": _mean(per_class[:n_things, 0]),
        "pq_stuff": _mean(per_class[n_things:, 0]),
        "pq_per_class": {name: float(v) for name, v in zip(names, per_class[:, 0])},
        "miou": float(np.nanmean(iou)),
        "class_iou": {name: float(v) for name, v in zip(dataset.class_names, iou)},
        "boundary_f1": float(np.nanmean(boundaries)),
        "prompts_per_image": float(np.mean(decoded)),
        "seconds_per_image": (time.perf_counter() - started) / max(count, 1),
    }
