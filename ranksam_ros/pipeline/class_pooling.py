"""Naming a mask by the class probabilities under it: one rule for the pipeline and the baseline.

A mask's class scores are the prompt predictor's class probabilities ``(C, G, G)`` averaged over
the class grid, each cell weighted by how much of it the mask covers. Two builders give those
per-cell weights ``(N, G, G)``: one from the soft low-resolution logits the pipeline decodes,
one from the binary source-resolution masks of SAM's automatic generator (the grid baseline),
so both modes name masks the same way and a comparison of them isolates prompt selection.
"""

from __future__ import annotations

import numpy as np

from ranksam_ros.graph.preprocess import ResizeInfo


def pool_class_probs(weights: np.ndarray, class_probs: np.ndarray) -> np.ndarray:
    """Class probabilities averaged over each mask, each grid cell counted by its weight.

    Args:
        weights: ``(N, G, G)`` non-negative coverage of each class-grid cell by each mask.
        class_probs: ``(C, G, G)`` class probabilities covering the padded network input.

    Returns:
        ``(N, C)`` float mean class probabilities (all zero for a mask with no weight).
    """
    if weights.shape[1:] != class_probs.shape[1:]:
        raise ValueError(
            f"mask weights {weights.shape} and class probabilities {class_probs.shape} "
            "must share the grid (N, G, G) / (C, G, G)"
        )
    total = np.maximum(weights.sum(axis=(1, 2))[:, None], 1e-6)
    return np.einsum("ngh,cgh->nc", weights, class_probs) / total


def soft_mask_weights(logits: np.ndarray, grid: int) -> np.ndarray:
    """Mean mask probability of each class-grid cell: low-res logits ``(N, m, m)`` -> ``(N, G, G)``.

    ``m`` must be a multiple of ``grid``; each cell averages the sigmoid of the ``(m / G)^2``
    logits it holds.
    """
    size = logits.shape[-1]
    if logits.ndim != 3 or logits.shape[1] != size or size % grid:
        raise ValueError(
            f"expected square logits (N, m, m) with m a multiple of {grid}, got {logits.shape}"
        )
    factor = size // grid
    soft = 1.0 / (1.0 + np.exp(-np.clip(logits, -30, 30)))  # clipped: no overflow warnings
    return soft.reshape(len(logits), grid, factor, grid, factor).mean(axis=(2, 4))


def source_mask_weights(masks: np.ndarray, geometry: ResizeInfo, grid: int) -> np.ndarray:
    """Source pixels of each mask in each class-grid cell: ``(N, H, W)`` bool -> ``(N, G, G)``.

    A pixel belongs to the cell its centre lands in once mapped into the network input, so a
    cell's weight is proportional to the area of the mask inside it.
    """
    if masks.ndim != 3 or masks.shape[1:] != tuple(geometry.source_hw):
        raise ValueError(
            f"masks must be (N, H, W) with (H, W) = {tuple(geometry.source_hw)}, got {masks.shape}"
        )
    cells = _cell_of_each_pixel(geometry, grid)
    weights = np.zeros((len(masks), grid * grid), np.float64)
    for i, mask in enumerate(masks):
        weights[i] = np.bincount(cells[mask.ravel()], minlength=grid * grid)
    return weights.reshape(len(masks), grid, grid)


def _cell_of_each_pixel(geometry: ResizeInfo, grid: int) -> np.ndarray:
    """Flat class-grid cell index ``(H * W,)`` of every source pixel (row-major)."""
    height, width = geometry.source_hw
    sx, sy = geometry.scale_xy
    cell = geometry.input_size / grid  # input pixels per cell side
    cols = np.minimum(((np.arange(width) + 0.5) * sx / cell).astype(np.int64), grid - 1)
    rows = np.minimum(((np.arange(height) + 0.5) * sy / cell).astype(np.int64), grid - 1)
    return (rows[:, None] * grid + cols[None, :]).ravel()
