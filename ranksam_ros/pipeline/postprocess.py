"""From low-resolution mask logits to masks in source pixels, label maps and RLE.

Bilinear upscaling is written as two small matrices (rows, columns) that reproduce
``torch.nn.functional.interpolate(mode="bilinear", align_corners=False)`` exactly, composed
with SAM's crop of the padding, so numpy gives the same masks as ``SamPredictor``.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np

from ranksam_ros.graph.preprocess import ResizeInfo


@lru_cache(maxsize=64)
def bilinear_matrix(in_size: int, out_size: int) -> np.ndarray:
    """``(out_size, in_size)`` weights of 1-D bilinear resampling, half-pixel centres."""
    scale = in_size / out_size
    src = np.maximum((np.arange(out_size) + 0.5) * scale - 0.5, 0.0)
    low = np.floor(src).astype(np.int64)
    low = np.minimum(low, in_size - 1)
    high = np.minimum(low + 1, in_size - 1)
    frac = src - low
    matrix = np.zeros((out_size, in_size), np.float64)
    rows = np.arange(out_size)
    np.add.at(matrix, (rows, low), 1.0 - frac)
    np.add.at(matrix, (rows, high), frac)
    matrix.setflags(write=False)
    return matrix


@lru_cache(maxsize=64)
def _source_matrices(
    mask_size: int, info_key: tuple[tuple[int, int], tuple[int, int], int]
) -> tuple[np.ndarray, np.ndarray]:
    (src_h, src_w), (res_h, res_w), size = info_key
    to_input = bilinear_matrix(mask_size, size)
    rows = bilinear_matrix(res_h, src_h) @ to_input[:res_h]
    cols = bilinear_matrix(res_w, src_w) @ to_input[:res_w]
    return rows.astype(np.float32), cols.astype(np.float32).T.copy()


def upscale_logits(logits: np.ndarray, info: ResizeInfo) -> np.ndarray:
    """Low-res logits ``(N, m, m)`` -> source-resolution logits ``(N, H, W)`` (float32).

    Equivalent to SAM's ``postprocess_masks``: upsample to the padded input, crop the
    padding, upsample to the source size.
    """
    if logits.ndim != 3 or logits.shape[1] != logits.shape[2]:
        raise ValueError(f"expected square low-res logits (N, m, m), got {logits.shape}")
    rows, cols = _source_matrices(
        logits.shape[1], (tuple(info.source_hw), tuple(info.resized_hw), info.input_size)
    )
    return np.matmul(np.matmul(rows, logits.astype(np.float32)), cols)


def upscale_to_input(logits: np.ndarray, size: int) -> np.ndarray:
    """Low-res logits ``(N, m, m)`` -> ``(N, size, size)`` at network-input resolution."""
    matrix = bilinear_matrix(logits.shape[1], size).astype(np.float32)
    return np.matmul(np.matmul(matrix, logits.astype(np.float32)), matrix.T)


def clip_to_boxes(masks: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    """Clear mask pixels outside each mask's box prompt (in place; returns ``masks``).

    A box prompt says the object lies inside it, but masks decoded at a quarter of the input
    resolution spill a few pixels over its edges; cutting them off is free accuracy for box
    prompts (mIoU on CamVid val: docs/results.md). Rows of ``boxes`` with a NaN (point prompts)
    leave their mask unchanged.

    Args:
        masks: ``(N, H, W)`` bool masks in source pixels.
        boxes: ``(N, 4)`` boxes x0, y0, x1, y1, pixel-inclusive, in the same pixels.
    """
    height, width = masks.shape[1:]
    for mask, box in zip(masks, np.asarray(boxes, np.float64).reshape(-1, 4)):
        if not np.isfinite(box).all():
            continue
        x0, y0 = (max(int(np.floor(v)), 0) for v in box[:2])
        x1, y1 = (int(np.ceil(v)) + 1 for v in box[2:])
        mask[:y0] = False
        mask[min(max(y1, 0), height) :] = False
        mask[:, :x0] = False
        mask[:, min(max(x1, 0), width) :] = False
    return masks


def fill_unassigned(
    semantic: np.ndarray, probs: np.ndarray, info: ResizeInfo, unassigned: int
) -> np.ndarray:
    """Give every unassigned pixel of a semantic map its most likely class.

    Args:
        semantic: ``(H, W)`` uint8 class ids, ``unassigned`` where no mask covers the pixel.
        probs: ``(C, G, G)`` class probabilities over the padded network input.
        info: The frame's geometry.
        unassigned: The value marking uncovered pixels.

    Returns:
        ``(H, W)`` uint8: a new map, or ``semantic`` itself when it has no unassigned pixel
        (the input is never modified).
    """
    holes = semantic == unassigned
    if not holes.any():
        return semantic
    dense = np.argmax(upscale_logits(probs, info), axis=0).astype(semantic.dtype)
    return np.where(holes, dense, semantic)


def mask_iou(a: np.ndarray, b: np.ndarray) -> float:
    """IoU of two boolean masks of equal shape (1.0 when both are empty)."""
    union = np.logical_or(a, b).sum()
    if union == 0:
        return 1.0
    return float(np.logical_and(a, b).sum() / union)


def mask_nms(masks: np.ndarray, scores: np.ndarray, iou_threshold: float) -> np.ndarray:
    """Greedy mask NMS.

    Args:
        masks: ``(N, h, w)`` bool.
        scores: ``(N,)``.
        iou_threshold: Drop a mask whose IoU with a kept, higher-scoring one exceeds this.

    Returns:
        Indices of kept masks, best first.
    """
    if len(masks) == 0:
        return np.zeros(0, np.int64)
    flat = masks.reshape(len(masks), -1).astype(np.float32)
    inter = flat @ flat.T
    area = flat.sum(1)
    iou = inter / np.maximum(area[:, None] + area[None, :] - inter, 1.0)
    keep: list[int] = []
    for i in np.argsort(-scores, kind="stable"):
        if all(iou[i, j] <= iou_threshold for j in keep):
            keep.append(int(i))
    return np.asarray(keep, np.int64)


def paint_labels(
    masks: np.ndarray, scores: np.ndarray, values: np.ndarray, background: int, dtype: type
) -> np.ndarray:
    """One label image from overlapping masks: each pixel takes the highest-scoring mask's value.

    Args:
        masks: ``(N, H, W)`` bool.
        scores: ``(N,)``.
        values: ``(N,)`` value painted for each mask (instance id or class id).
        background: Value where no mask covers the pixel.
        dtype: Output dtype (uint16 for instance ids, uint8 for classes).
    """
    if len(masks) == 0:
        raise ValueError("paint_labels needs at least one mask; callers build empty maps directly")
    out = np.full(masks.shape[1:], background, dtype=dtype)
    for i in np.argsort(scores, kind="stable"):  # lowest first, best painted last
        out[masks[i]] = values[i]
    return out


def encode_rle(mask: np.ndarray) -> list[int]:
    """Uncompressed, row-major run-length encoding of a 2-D bool mask.

    Counts alternate background/foreground runs starting with background (COCO's convention,
    but row-major as images are stored); a mask starting with foreground begins with 0.
    """
    flat = np.asarray(mask, dtype=bool).ravel()
    if flat.size == 0:
        return []
    change = np.flatnonzero(flat[1:] != flat[:-1]) + 1
    bounds = np.concatenate([[0], change, [flat.size]])
    runs = np.diff(bounds).tolist()
    return [0, *runs] if flat[0] else runs


def decode_rle(counts: list[int], height: int, width: int) -> np.ndarray:
    """Inverse of :func:`encode_rle`; raises ``ValueError`` if counts do not fill ``H x W``."""
    counts = np.asarray(counts, dtype=np.int64)
    if np.any(counts < 0) or counts.sum() != height * width:
        raise ValueError(f"RLE counts sum to {counts.sum()}, expected {height * width}")
    values = np.arange(len(counts)) % 2 == 1
    return np.repeat(values, counts).reshape(height, width)
