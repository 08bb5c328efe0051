"""Panoptic output: a dense class map from the semantic head, instances only for things.

Road, sky, building, pavement, tree and fence are *stuff*: the semantic head labels them in
one pass and nobody needs instances of them. Pedestrians, cars, cyclists, poles and signs
are *things*: automatic prompts come only from their confidence maps, SAM decodes one mask
per object, and every instance keeps only the pixels the class map gives its class, so the
two outputs agree. The panoptic image encodes both per pixel as ``class * 1000 + instance``
(Cityscapes' convention; stuff pixels carry instance 0).
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from ranksam_ros.graph.preprocess import ResizeInfo
from ranksam_ros.graph.prompts import boxes_to_prompts
from ranksam_ros.pipeline.postprocess import upscale_logits
from ranksam_ros.pipeline.prompts import Candidates
from ranksam_ros.pipeline.result import Instance, Segmentation

LABEL_DIVISOR = 1000  # panoptic id = class * LABEL_DIVISOR + instance id


def thing_mask(class_names: tuple[str, ...], things: tuple[str, ...]) -> np.ndarray:
    """``(C,)`` bool: which of the model's classes are things.

    Raises:
        ValueError: a thing class the model does not have.
    """
    unknown = sorted(set(things) - set(class_names))
    if unknown:
        raise ValueError(f"pipeline.thing_classes {unknown} are not classes of the model")
    return np.array([name in things for name in class_names], bool)


def thing_confidence(confidence: np.ndarray, things: np.ndarray) -> np.ndarray:
    """Prompt-confidence maps ``(C, G, G)`` with every stuff channel zeroed."""
    return np.where(things[:, None, None], confidence, 0.0)


def thing_centres(
    class_probs: np.ndarray, things: np.ndarray, factor: int
) -> tuple[np.ndarray, np.ndarray]:
    """Prompt-confidence maps for things from the semantic head alone (no prompt predictor).

    Each connected region of a thing class in the class map gets its peak at its most interior
    cell (largest distance to the region's edge), and two objects of one class that touch
    through a narrow neck get one each. A region's map is ``(its mean probability) * distance /
    (largest distance in the region)``, less a tiny term that grows away from the region's
    centroid: a plateau (a pole one cell wide) then has a single peak, and probability noise
    inside a region makes none (the probability is one number per region).

    Args:
        class_probs: ``(C, m, m)`` class probabilities of the semantic head.
        things: ``(C,)`` bool thing classes.
        factor: Mask-grid cells per confidence cell (the maps are average-pooled by it).

    Returns:
        ``(C, G, G)`` confidences in [0, 1] (stuff channels zero), ``G = m // factor``, and
        ``(G, G, 4)`` the box ``x0, y0, x1, y1`` (cells, inclusive) of the thing region each
        cell lies in (NaN outside things): every cell has one class, so one region.
    """
    channels, side = class_probs.shape[0], class_probs.shape[-1] // factor
    probs = np.nan_to_num(class_probs[:, : side * factor, : side * factor], nan=0.0)
    # Two single-axis sums: a mean over the axis pair (2, 4) walks memory across strides.
    probs = probs.reshape(channels, side, factor, side, factor).sum(axis=4).sum(axis=2)
    probs /= factor * factor
    winner = np.argmax(probs, axis=0)
    out = np.zeros_like(probs, dtype=np.float32)
    boxes = np.full((side, side, 4), np.nan)
    rows, cols = np.indices((side, side))
    for c in np.flatnonzero(things[:channels]):
        region = winner == c
        regions, count = ndimage.label(region)
        if not count:
            continue
        # Per-region statistics with bincount (one pass each) instead of scipy's per-label
        # measurements, which cost more in call overhead than in arithmetic on a 48x48 grid.
        labels = regions[region]
        depth = ndimage.distance_transform_edt(region)
        area = np.bincount(labels, minlength=count + 1)[1:]
        deepest = np.zeros(count + 1)
        np.maximum.at(deepest, labels, depth[region])
        centre_row = np.bincount(labels, rows[region], count + 1)[1:] / area
        centre_col = np.bincount(labels, cols[region], count + 1)[1:] / area
        mean = np.bincount(labels, probs[c][region], count + 1)[1:] / area
        index = labels - 1
        offset = np.hypot(rows[region] - centre_row[index], cols[region] - centre_col[index])
        centred = depth[region] / np.maximum(deepest[labels], 1.0) - 1e-3 * offset / side
        out[c][region] = np.clip(mean[index] * centred, 0.0, 1.0)
        windows = np.array([_box(w) for w in ndimage.find_objects(regions)], float)
        boxes[region] = windows[index]
    return out, boxes


def dense_classes(class_probs: np.ndarray, geometry: ResizeInfo) -> tuple[np.ndarray, np.ndarray]:
    """Most likely class of every source pixel from ``(C, G, G)`` probabilities.

    Returns:
        ``(H, W)`` uint8 classes and ``(H, W)`` float32 probability of each pixel's class.
    """
    probs = upscale_logits(class_probs, geometry)
    # One contiguous pass per class: numpy's arg-max over the leading axis of (C, H, W) walks
    # memory with a stride of H * W; with the gather of the winner it took 10.8 ms against
    # 4.1 at 480x360 (docs/benchmarks.md).
    # NaN never wins (a NaN comparison is false, fmax skips it) and never blocks later classes.
    classes, best = np.zeros(probs.shape[1:], np.uint8), np.nan_to_num(probs[0], nan=0.0)
    for c in range(1, len(probs)):
        better = probs[c] > best
        classes[better] = c
        np.fmax(best, probs[c], out=best)
    return classes, best


def region_instances(
    semantic: np.ndarray,
    confidence: np.ndarray,
    things: np.ndarray,
    class_names: tuple[str, ...],
    min_area: int,
    free: np.ndarray | None = None,
) -> list[Instance]:
    """Each connected region of a thing class in the class map as one instance, no SAM decode.

    The fast path (``pipeline.thing_masks: regions``): objects of one class that touch become
    one instance, which SAM's prompted masks would keep apart.

    Args:
        semantic: ``(H, W)`` uint8 dense class map.
        confidence: ``(H, W)`` probability of each pixel's class; an instance's score is its mean.
        things: ``(C,)`` bool thing classes.
        class_names: Names of the classes.
        min_area: Smallest region kept, in pixels (specks are skipped before any mask is made).
        free: ``(H, W)`` bool pixels no other instance holds (all when None).

    Returns:
        Instances, best score first, ids unset (``make_panoptic`` numbers them).
    """
    found = []
    for c in np.flatnonzero(things):
        region = semantic == c if free is None else (semantic == c) & free
        regions, count = ndimage.label(region)
        if not count:
            continue
        labels = regions[region]  # only this class's pixels: things cover little of a frame
        areas = np.bincount(labels, minlength=count + 1)[1:]
        sums = np.bincount(labels, weights=confidence[region], minlength=count + 1)[1:]
        scores = sums / np.maximum(areas, 1)
        windows = ndimage.find_objects(regions)
        for k in np.flatnonzero(areas >= max(min_area, 1)):
            rows, cols = windows[k]
            mask = np.zeros(regions.shape, bool)
            mask[rows, cols] = regions[rows, cols] == k + 1
            ys, xs = np.nonzero(mask[rows, cols])
            centre = (float(xs.mean() + cols.start), float(ys.mean() + rows.start))
            box = _box(windows[k])
            score = float(scores[k])
            found.append(
                Instance(
                    0, int(c), class_names[c], score, 0.0, box, int(areas[k]), mask, centre, score
                )
            )
    return sorted(found, key=lambda inst: -inst.score)


def thing_class(pooled: np.ndarray, things: np.ndarray) -> np.ndarray:
    """Class of each mask among the thing classes only: ``(N, C)`` pooled probabilities."""
    return np.argmax(np.where(things[None], pooled, -1.0), axis=1)


def make_panoptic(
    result: Segmentation, semantic: np.ndarray, things: np.ndarray, min_area: int
) -> None:
    """Make ``result`` panoptic in place.

    Instances lose the pixels of other classes (and vanish below ``min_area``), are renumbered
    1..K in score order, and paint the instance and panoptic maps; ``semantic`` (the dense
    class map) becomes the result's class map.

    Args:
        result: Instances found on the frame (thing classes, or any class of given prompts).
        semantic: ``(H, W)`` uint8 dense class map of the semantic head.
        things: ``(C,)`` bool thing classes.
        min_area: Smallest instance kept, in pixels.
    """
    kept: list[Instance] = []
    for inst in sorted(result.instances, key=lambda i: -i.score):  # stable: ties keep order
        # Work inside the instance's box (it bounds the mask): 480x360 frames, 20 instances.
        window = _window(inst.box)
        inside = inst.mask[window] & (semantic[window] == inst.class_id)
        area = int(np.count_nonzero(inside))
        if area < max(min_area, 1):
            continue
        ys, xs = np.nonzero(inside.any(axis=1))[0], np.nonzero(inside.any(axis=0))[0]
        x0, y0 = inst.box[0], inst.box[1]
        inst.mask = np.zeros_like(inst.mask)
        inst.mask[window] = inside
        inst.area = area
        inst.box = (x0 + int(xs[0]), y0 + int(ys[0]), x0 + int(xs[-1]), y0 + int(ys[-1]))
        inst.instance_id = len(kept) + 1
        kept.append(inst)
    result.instances = kept
    result.semantic = semantic
    ids = np.zeros(semantic.shape, np.uint16)
    for inst in sorted(kept, key=lambda i: i.score):  # lowest first, the best painted last
        window = _window(inst.box)
        ids[window][inst.mask[window]] = inst.instance_id
    result.instance_ids = ids
    result.panoptic = semantic.astype(np.int32) * LABEL_DIVISOR + ids.astype(np.int32)


def _window(box: tuple[int, int, int, int]) -> tuple[slice, slice]:
    """Rows and columns of an inclusive pixel box ``(x0, y0, x1, y1)``."""
    return slice(box[1], box[3] + 1), slice(box[0], box[2] + 1)


def _box(window: tuple[slice, slice]) -> tuple[int, int, int, int]:
    """Inclusive pixel box ``(x0, y0, x1, y1)`` of rows and columns (the inverse of _window)."""
    rows, cols = window
    return cols.start, rows.start, cols.stop - 1, rows.stop - 1


def region_boxes_at(region_boxes: np.ndarray, xy: np.ndarray, input_size: int) -> np.ndarray:
    """``(N, 4)`` inclusive cell boxes of the regions the points ``xy`` (input pixels) lie in."""
    cell = input_size / region_boxes.shape[0]
    at = np.clip((xy / cell).astype(np.int64), 0, region_boxes.shape[0] - 1)
    return region_boxes[at[:, 1], at[:, 0]]


def inside_image(maps: np.ndarray, geometry: ResizeInfo) -> np.ndarray:
    """``maps (C, G, G)`` with the cells wholly in the input's padding zeroed."""
    side = maps.shape[-1]
    rows, cols = (int(np.ceil(n * side / geometry.input_size)) for n in geometry.resized_hw)
    out = np.zeros_like(maps)
    out[:, :rows, :cols] = maps[:, :rows, :cols]
    return out


def one_per_box(found: Candidates, region_boxes: np.ndarray, input_size: int) -> Candidates:
    """The best candidate of each region (one box prompt per region), none outside regions."""
    boxes = region_boxes_at(region_boxes, found.xy, input_size)
    keep, seen = [], set()
    for i, box in enumerate(boxes):  # best first
        key = tuple(box)
        if np.isfinite(box).all() and key not in seen:
            seen.add(key)
            keep.append(i)
    return found.subset(keep)


def region_box_prompts(
    region_boxes: np.ndarray, xy: np.ndarray, input_size: int
) -> tuple[np.ndarray, np.ndarray]:
    """Box prompts of the regions the points ``xy (N, 2)`` (input pixels) lie in.

    Args:
        region_boxes: ``(G, G, 4)`` inclusive cell box of each cell's region.
        xy: Points inside thing regions.
        input_size: Side of the network input the grid covers.

    Returns:
        ``coords (N, 2, 2)`` and ``labels (N, 2)`` of the boxes in input pixels.
    """
    cell = input_size / region_boxes.shape[0]
    boxes = region_boxes_at(region_boxes, xy, input_size)
    corners = np.concatenate([boxes[:, :2] * cell, (boxes[:, 2:] + 1) * cell - 1], axis=1)
    return boxes_to_prompts(corners)
