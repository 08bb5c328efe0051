"""Segments (connected components of each class) and the prompts sampled from them."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage

EIGHT_CONNECTED = np.ones((3, 3), dtype=bool)


@dataclass
class Segment:
    """One connected component of one class.

    Attributes:
        class_id: Class index.
        mask: Boolean mask ``(H, W)``.
        box: Tight box ``(x0, y0, x1, y1)`` in pixel coordinates, x1/y1 inclusive.
        area: Pixel count.
    """

    class_id: int
    mask: np.ndarray
    box: tuple[int, int, int, int]
    area: int


def find_segments(
    label: np.ndarray, num_classes: int, min_area: int = 1, ignore_label: int | None = None
) -> list[Segment]:
    """Connected components (8-connected) of each class in a label map.

    Args:
        label: Class indices ``(H, W)``.
        num_classes: Classes ``0..num_classes-1`` are segmented; others (ignore) are skipped.
        min_area: Components smaller than this are dropped.
        ignore_label: Explicitly skipped label value.

    Returns:
        Segments sorted by class, then by position.
    """
    segments = []
    for class_id in np.unique(label):
        class_id = int(class_id)
        if class_id >= num_classes or class_id == ignore_label:
            continue
        components, count = ndimage.label(label == class_id, structure=EIGHT_CONNECTED)
        if count == 0:
            continue
        areas = np.bincount(components.ravel(), minlength=count + 1)
        for index, slices in enumerate(ndimage.find_objects(components), start=1):
            if slices is None or areas[index] < min_area:
                continue
            mask = components == index
            ys, xs = slices
            box = (xs.start, ys.start, xs.stop - 1, ys.stop - 1)
            segments.append(Segment(class_id, mask, box, int(areas[index])))
    return segments


def box_prompt(segment: Segment, jitter: float, rng: np.random.Generator) -> np.ndarray:
    """Box ``(4,)`` x0, y0, x1, y1 around a segment, each side moved by up to ``jitter`` x size."""
    x0, y0, x1, y1 = (float(v) for v in segment.box)
    if jitter > 0:
        width, height = x1 - x0 + 1, y1 - y0 + 1
        noise = rng.normal(0.0, jitter, 4) * np.array([width, height, width, height])
        noise = np.clip(noise, -20.0, 20.0)
        x0, y0, x1, y1 = x0 + noise[0], y0 + noise[1], x1 + noise[2], y1 + noise[3]
    h, w = segment.mask.shape
    box = np.array([min(x0, x1), min(y0, y1), max(x0, x1), max(y0, y1)])
    return np.clip(box, 0, [w - 1, h - 1, w - 1, h - 1])


def interior_point(
    mask: np.ndarray, box: tuple[int, int, int, int] | None = None
) -> tuple[float, float]:
    """The most interior pixel (maximum of the distance transform) as ``(x, y)``.

    Args:
        mask: Boolean mask ``(H, W)``.
        box: The mask's inclusive bounding box; the transform then runs on that crop only
            (a segment's box is usually a small part of the frame).
    """
    x0, y0 = 0, 0
    if box is not None:
        x0, y0, x1, y1 = box
        mask = mask[y0 : y1 + 1, x0 : x1 + 1]
    distance = ndimage.distance_transform_edt(np.pad(mask, 1))[1:-1, 1:-1]
    y, x = np.unravel_index(int(np.argmax(distance)), distance.shape)
    return float(x + x0), float(y + y0)


def point_prompts(segment: Segment, count: int, rng: np.random.Generator) -> np.ndarray:
    """``count`` foreground points ``(count, 2)`` (x, y) drawn uniformly inside the segment."""
    ys, xs = np.nonzero(segment.mask)
    picks = rng.integers(0, len(xs), size=count)
    return np.stack([xs[picks], ys[picks]], axis=1).astype(np.float64)
