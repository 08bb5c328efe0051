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


@lru_cache(maxsize=64)
def _support(
    mask_size: int, info_key: tuple[tuple[int, int], tuple[int, int], int]
) -> tuple[np.ndarray, ...]:
    """First and last low-res row (of ``rows``) and column (of ``cols``) each output pixel reads.

    Resampling is banded and monotone, so both arrays are non-decreasing: the output rows a
    block of low-res rows reaches form one contiguous range (``searchsorted``).
    """
    rows, cols = _source_matrices(mask_size, info_key)
    spans = []
    for weights in (rows, cols.T):
        nonzero = weights != 0
        first = np.argmax(nonzero, axis=1)
        last = weights.shape[1] - 1 - np.argmax(nonzero[:, ::-1], axis=1)
        spans += [first, last]
    return tuple(spans)


def _resampling(
    logits: np.ndarray, info: ResizeInfo
) -> tuple[np.ndarray, np.ndarray, tuple[np.ndarray, ...]]:
    """Row and column matrices from ``(N, m, m)`` logits to ``info``'s source, and their spans.

    Raises:
        ValueError: the logits are not ``(N, m, m)``.
    """
    if logits.ndim != 3 or logits.shape[1] != logits.shape[2]:
        raise ValueError(f"expected square low-res logits (N, m, m), got {logits.shape}")
    key = (tuple(info.source_hw), tuple(info.resized_hw), info.input_size)
    return (*_source_matrices(logits.shape[1], key), _support(logits.shape[1], key))


def upscale_logits(logits: np.ndarray, info: ResizeInfo) -> np.ndarray:
    """Low-res logits ``(N, m, m)`` -> source-resolution logits ``(N, H, W)`` (float32).

    Equivalent to SAM's ``postprocess_masks``: upsample to the padded input, crop the
    padding, upsample to the source size.
    """
    rows, cols, (_, row_last, _, col_last) = _resampling(logits, info)
    # Low-res cells of the padding reach no source pixel: leave them out of the products.
    used_rows, used_cols = row_last[-1] + 1, col_last[-1] + 1
    rows, cols = rows[:, :used_rows], cols[:used_cols]
    low = logits[:, :used_rows, :used_cols].astype(np.float32)
    (height, inner), width = rows.shape, cols.shape[1]
    # Whichever order multiplies fewer numbers (it depends on the frame's shape).
    if height * inner * used_cols + height * used_cols * width <= (
        inner * used_cols * width + height * inner * width
    ):
        return np.matmul(np.matmul(rows, low), cols)
    return np.matmul(rows, np.matmul(low, cols))


def upscale_masks(
    logits: np.ndarray, info: ResizeInfo, cuts: np.ndarray, boxes: np.ndarray | None = None
) -> np.ndarray:
    """Masks in source pixels, ``upscale_logits(logits) > cuts``, computed only where they can be.

    An upscaled logit is a weighted mean of the low-res logits around it, so it can only
    exceed the cut near a low-res cell that does: each mask is upscaled over the source
    window those cells reach (and, with ``boxes``, inside its box), not over the whole
    frame. Things cover a small part of a frame; this is most of what their masks cost.

    Args:
        logits: ``(N, m, m)`` low-res mask logits.
        info: The frame's geometry.
        cuts: ``(N,)`` logit cut of each mask.
        boxes: ``(N, 4)`` pixel-inclusive source boxes to clip each mask to (as
            :func:`clip_to_boxes`); rows with a NaN, or None, clip nothing.

    Returns:
        ``(N, H, W)`` bool.
    """
    rows, cols, (row_first, row_last, col_first, col_last) = _resampling(logits, info)
    height, width = info.source_hw
    masks = np.zeros((len(logits), height, width), bool)
    for i, (low, cut) in enumerate(zip(logits, np.broadcast_to(cuts, len(logits)))):
        hot = low > cut
        if not hot.any():
            continue
        hot_rows, hot_cols = np.flatnonzero(hot.any(axis=1)), np.flatnonzero(hot.any(axis=0))
        y0, y1 = _reach(row_first, row_last, hot_rows[0], hot_rows[-1])
        x0, x1 = _reach(col_first, col_last, hot_cols[0], hot_cols[-1])
        if boxes is not None and np.isfinite(boxes[i]).all():
            by0, by1, bx0, bx1 = box_window(boxes[i], height, width)
            y0, y1, x0, x1 = max(y0, by0), min(y1, by1), max(x0, bx0), min(x1, bx1)
        if y0 >= y1 or x0 >= x1:
            continue
        r0, r1 = row_first[y0], row_last[y1 - 1] + 1  # the low-res block the window reads
        c0, c1 = col_first[x0], col_last[x1 - 1] + 1
        block = rows[y0:y1, r0:r1] @ low[r0:r1, c0:c1].astype(np.float32) @ cols[c0:c1, x0:x1]
        masks[i, y0:y1, x0:x1] = block > cut
    return masks


def _reach(first: np.ndarray, last: np.ndarray, low: int, high: int) -> tuple[int, int]:
    """Output range ``[start, stop)`` whose pixels read any low-res index in ``[low, high]``."""
    return int(np.searchsorted(last, low, "left")), int(np.searchsorted(first, high, "right"))


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
        y0, y1, x0, x1 = box_window(box, height, width)
        inside = mask[y0:y1, x0:x1].copy()
        mask[:] = False
        mask[y0:y1, x0:x1] = inside
    return masks


def box_window(box: np.ndarray, height: int, width: int) -> tuple[int, int, int, int]:
    """Rows ``[y0, y1)`` and columns ``[x0, x1)`` of the pixels inside a pixel-inclusive box.

    Fractional corners keep every pixel the box touches; the window is clamped to the frame
    and may be empty.
    """
    x0, y0 = (min(max(int(np.floor(v)), 0), n) for v, n in zip(box[:2], (width, height)))
    x1, y1 = (min(max(int(np.ceil(v)) + 1, 0), n) for v, n in zip(box[2:], (width, height)))
    return y0, max(y1, y0), x0, max(x1, x0)


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
