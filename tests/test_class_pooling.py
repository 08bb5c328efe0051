"""One mask-to-class pooling for the pipeline and the grid baseline, against the old formulas."""

from __future__ import annotations

import numpy as np
import pytest

from ranksam_ros.data.folder import SegmentationFolder
from ranksam_ros.data.segments import find_segments
from ranksam_ros.graph.preprocess import preprocess
from ranksam_ros.pipeline.class_pooling import (
    pool_class_probs,
    soft_mask_weights,
    source_mask_weights,
)

INPUT_SIZE, GRID, MASK_SIZE, CLASSES = 384, 48, 96, 11


def _old_pipeline_pooling(class_probs: np.ndarray, logits: np.ndarray) -> np.ndarray:
    """The pipeline's pool_class_probs before the two poolings became one."""
    grid = class_probs.shape[-1]
    factor = logits.shape[-1] // grid
    soft = 1.0 / (1.0 + np.exp(-np.clip(logits, -30, 30)))
    weights = soft.reshape(len(logits), grid, factor, grid, factor).mean(axis=(2, 4))
    return np.einsum("ngh,cgh->nc", weights, class_probs) / np.maximum(
        weights.sum(axis=(1, 2))[:, None], 1e-6
    )


def _old_grid_classes(probs: np.ndarray, masks: np.ndarray, geometry) -> np.ndarray:
    """The grid baseline's pool_classes (train/evaluate_auto.py) before the merge."""
    grid = probs.shape[-1]
    height, width = geometry.source_hw
    sx, sy = geometry.scale_xy
    cell = geometry.input_size / grid
    cols = np.minimum(((np.arange(width) + 0.5) * sx / cell).astype(np.int64), grid - 1)
    rows = np.minimum(((np.arange(height) + 0.5) * sy / cell).astype(np.int64), grid - 1)
    cell_index = (rows[:, None] * grid + cols[None, :]).ravel()
    flat = probs.reshape(probs.shape[0], -1)
    out = np.zeros(len(masks), np.int64)
    for i, mask in enumerate(masks):
        counts = np.bincount(cell_index[mask.ravel()], minlength=grid * grid)
        out[i] = int(np.argmax(flat @ counts))
    return out


def _class_probs(rng: np.random.Generator) -> np.ndarray:
    logits = rng.normal(0.0, 2.0, (CLASSES, GRID, GRID))
    probs = np.exp(logits) / np.exp(logits).sum(0, keepdims=True)
    return probs.astype(np.float32)  # the prompt predictor's dtype


def test_pipeline_pooling_is_bit_identical_to_the_old_one():
    rng = np.random.default_rng(0)
    probs = _class_probs(rng)
    logits = rng.normal(0.0, 8.0, (40, MASK_SIZE, MASK_SIZE)).astype(np.float32)
    logits[0] = -50.0  # an empty mask: no weight anywhere
    new = pool_class_probs(soft_mask_weights(logits, GRID), probs)
    old = _old_pipeline_pooling(probs, logits)
    np.testing.assert_array_equal(new, old)
    assert new.shape == (40, CLASSES)
    assert np.array_equal(new.argmax(1), old.argmax(1))


def test_grid_baseline_names_the_masks_of_a_frame_as_before(frames_dir):
    image, label = SegmentationFolder(frames_dir)[0]
    _, geometry = preprocess(image, INPUT_SIZE, (0.0, 0.0, 0.0), (1.0, 1.0, 1.0))
    segments = find_segments(label, CLASSES, 64, 11)
    rng = np.random.default_rng(1)
    masks = [s.mask for s in segments]
    for _ in range(20):  # and rectangles that cut across cells and classes
        x0, y0 = rng.integers(0, image.shape[1] - 8), rng.integers(0, image.shape[0] - 8)
        box = np.zeros(label.shape, bool)
        box[y0 : y0 + rng.integers(2, 120), x0 : x0 + rng.integers(2, 160)] = True
        masks.append(box)
    masks = np.stack(masks)
    assert len(masks) > 30
    for seed in range(3):
        probs = _class_probs(np.random.default_rng(seed))
        weights = source_mask_weights(masks, geometry, GRID)
        new = pool_class_probs(weights, probs).argmax(1)
        np.testing.assert_array_equal(new, _old_grid_classes(probs, masks, geometry))
    # Weights count source pixels: every pixel of every mask lands in exactly one cell.
    np.testing.assert_array_equal(weights.sum(axis=(1, 2)), masks.sum(axis=(1, 2)))


def test_pooling_rejects_mismatched_grids():
    probs = np.ones((CLASSES, GRID, GRID), np.float32)
    with pytest.raises(ValueError, match="share the grid"):
        pool_class_probs(np.ones((2, GRID // 2, GRID // 2)), probs)
    with pytest.raises(ValueError, match="multiple of 48"):
        soft_mask_weights(np.zeros((2, 100, 100), np.float32), GRID)
