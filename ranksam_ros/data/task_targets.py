"""Dense targets of the multi-task heads, derived from a semantic label map (numpy only).

* semantic boundaries: pixels whose 4-neighbourhood holds another (labelled) class;
* instances of thing classes: connected components (8-connected) of each thing class;
* instance centres: a Gaussian peak at each instance's most interior pixel (a prompt there
  falls inside the object, even for thin or curved ones), and per instance pixel the offset
  to its centre (Panoptic-DeepLab's centre + offset encoding).
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from ranksam_ros.data.segments import EIGHT_CONNECTED, interior_point

IGNORE = -1.0  # target value of pixels the loss skips


def boundary_target(label: np.ndarray, num_classes: int, width: int = 1) -> np.ndarray:
    """``(H, W)`` float32: 1 on class boundaries (grown by ``width`` px), 0 elsewhere.

    Pixels of labels ``>= num_classes`` (ignore) are :data:`IGNORE` and never make a boundary.
    """
    valid = label < num_classes
    edge = np.zeros(label.shape, bool)
    for axis in (0, 1):
        a, b = np.moveaxis(label, axis, 0), np.moveaxis(valid, axis, 0)
        change = (a[1:] != a[:-1]) & b[1:] & b[:-1]
        moved = np.moveaxis(edge, axis, 0)
        moved[1:] |= change
        moved[:-1] |= change
    if width > 1:
        edge = ndimage.binary_dilation(edge, iterations=width - 1)
    out = edge.astype(np.float32)
    out[~valid] = IGNORE
    return out


def thing_instances(
    label: np.ndarray, thing_ids: tuple[int, ...], min_area: int = 1
) -> tuple[np.ndarray, list[int]]:
    """Instance ids ``(H, W)`` int32 (0 = stuff or nothing) and the class of each id (1-based)."""
    instances = np.zeros(label.shape, np.int32)
    classes: list[int] = []
    for class_id in thing_ids:
        components, count = ndimage.label(label == class_id, structure=EIGHT_CONNECTED)
        if count == 0:
            continue
        areas = np.bincount(components.ravel(), minlength=count + 1)
        for index in range(1, count + 1):
            if areas[index] < min_area:
                continue
            classes.append(class_id)
            instances[components == index] = len(classes)
    return instances, classes


def centre_targets(
    instances: np.ndarray, grid: tuple[int, int], stride: float, sigma: float = 2.0
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Centre heatmap and offsets on a grid of ``stride`` input pixels per cell.

    Args:
        instances: Instance ids ``(H, W)`` in input pixels (0 = none).
        grid: ``(rows, cols)`` of the output grid.
        stride: Input pixels per grid cell.
        sigma: Gaussian width in cells.

    Returns:
        ``heatmap (rows, cols)`` in [0, 1] (1 at each centre's cell), ``offsets (2, rows, cols)`` in
        grid cells from the cell to its instance's centre (x, y), and ``mask (rows, cols)``
        bool: cells whose centre pixel belongs to an instance (where offsets are trained).
    """
    rows, cols = grid
    heatmap = np.zeros(grid, np.float32)
    offsets = np.zeros((2, rows, cols), np.float32)
    ys = np.minimum(((np.arange(rows) + 0.5) * stride).astype(np.int64), instances.shape[0] - 1)
    xs = np.minimum(((np.arange(cols) + 0.5) * stride).astype(np.int64), instances.shape[1] - 1)
    sampled = instances[np.ix_(ys, xs)]
    cy, cx = np.mgrid[0:rows, 0:cols].astype(np.float32)
    for slices, index in zip(ndimage.find_objects(instances), range(1, instances.max() + 1)):
        if slices is None:
            continue
        box = (slices[1].start, slices[0].start, slices[1].stop - 1, slices[0].stop - 1)
        x, y = interior_point(instances == index, box)
        gx, gy = (x + 0.5) / stride - 0.5, (y + 0.5) / stride - 0.5
        # The peak sits on the nearest cell (exactly 1 there, as the focal loss expects);
        # offsets point at the exact centre.
        px, py = min(max(round(gx), 0), cols - 1), min(max(round(gy), 0), rows - 1)
        blob = np.exp(-((cx - px) ** 2 + (cy - py) ** 2) / (2 * sigma**2))
        np.maximum(heatmap, blob, out=heatmap)
        inside = sampled == index
        offsets[0][inside] = gx - cx[inside]
        offsets[1][inside] = gy - cy[inside]
    return heatmap, offsets, sampled > 0
