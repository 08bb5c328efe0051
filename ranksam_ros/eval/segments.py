"""Box-prompt and one-click segment IoU (``ranksam eval --prompts box|point``).

Box mode: every connected component of every class (``min_segment_area`` pixels and up) is
prompted with its tight box; the metric is the mask IoU at source resolution, averaged over
segments. The filled box itself is scored the same way: the bar any box-prompted model must
clear. Point mode prompts each segment with one click on its most interior pixel instead (SAM's
1-click protocol), which leans on the image far more than a box does.
"""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Sequence

import numpy as np
from scipy import ndimage

from ranksam_ros.backends import Backend, create_backend
from ranksam_ros.config import DataConfig, PipelineConfig
from ranksam_ros.data.segments import Segment, find_segments, interior_point
from ranksam_ros.eval.frames import check_model_classes, degraded_frames, open_frames
from ranksam_ros.eval.options import EvalOptions
from ranksam_ros.graph.preprocess import ResizeInfo, preprocess
from ranksam_ros.graph.prompts import boxes_to_prompts
from ranksam_ros.graph.types import Encoded
from ranksam_ros.pipeline.postprocess import clip_to_boxes, mask_iou, upscale_logits

LARGE_AREA = 1000  # segments this large (pixels) and up are also scored on their own
DECODE_BATCH = 32
# Boundary IoU (Cheng et al. 2021): IoU of the bands within this share of the image diagonal
# inside each mask's contour; 0.02 is the standard, 0.01 a stricter band.
BOUNDARY_RATIOS = (0.02, 0.01)


def boundary_iou(truth: np.ndarray, pred: np.ndarray, ratio: float) -> float:
    """Boundary IoU of two masks ``(H, W)`` bool with a band of ``ratio`` x the diagonal."""
    width = max(1, int(round(ratio * float(np.hypot(*truth.shape)))))
    both = truth | pred
    if not both.any():
        return 1.0
    rows, cols = np.flatnonzero(both.any(axis=1)), np.flatnonzero(both.any(axis=0))
    pad = width + 1  # the band of a mask cut by the crop must still see its outside
    window = (
        slice(max(rows[0] - pad, 0), rows[-1] + pad + 1),
        slice(max(cols[0] - pad, 0), cols[-1] + pad + 1),
    )
    band_t, band_p = _band(truth[window], width), _band(pred[window], width)
    union = np.logical_or(band_t, band_p).sum()
    return float(np.logical_and(band_t, band_p).sum() / union) if union else 1.0


def _band(mask: np.ndarray, width: int) -> np.ndarray:
    """Pixels of ``mask`` within ``width`` of its contour (the image edge counts as outside)."""
    eroded = ndimage.binary_erosion(mask, iterations=width, border_value=0)
    return mask & ~eroded


def _decode_chunk(
    backend: Backend,
    encoded: Encoded,
    geometry: ResizeInfo,
    chunk: list[Segment],
    boxes: np.ndarray,
    prompts: str,
) -> np.ndarray:
    """Low-res logits ``(N, m, m)`` of one prompt per segment (``boxes``: their tight boxes).

    ``box``: the tight box, SAM's single-mask output. ``point``: one click on the segment's
    most interior pixel, SAM's three ambiguity masks, the one with the highest predicted IoU
    (SAM's 1-click protocol).
    """
    if prompts == "point":
        points = np.array([interior_point(s.mask, s.box) for s in chunk], np.float64)
        coords = geometry.to_input(points)[:, None].astype(np.float32)
        logits, iou = backend.decode(encoded, coords, np.ones((len(chunk), 1), np.float32), True)
        return logits[np.arange(len(chunk)), iou.argmax(1)]
    # Pixel-inclusive corners (x1, y1 = last pixel inside), the convention the model is
    # trained with; boxes one pixel larger cost 3 points of mIoU on small segments.
    coords, labels = boxes_to_prompts(geometry.to_input(boxes.reshape(-1, 2)).reshape(-1, 4))
    return backend.decode(encoded, coords, labels, multimask=False)[0][:, 0]


def score_frame(
    backend: Backend,
    image: np.ndarray,
    label: np.ndarray,
    dataset: DataConfig,
    cfg: PipelineConfig,
    prompts: str = "box",
) -> tuple[list[tuple], float | None]:
    """Score every segment of one frame, prompted with its tight box (or one interior click).

    Args:
        backend: The engine.
        image: RGB uint8 ``(H, W, 3)``.
        label: Class ids uint8 ``(H, W)`` (``dataset.ignore_label`` is skipped).
        dataset: Classes, ignored label and smallest segment scored.
        cfg: Mask thresholds and box clipping.
        prompts: ``box`` or ``point``.

    Returns:
        Rows ``(class, area, mask IoU, filled-box IoU, mask IoU without clipping, boundary
        IoU at each of BOUNDARY_RATIOS)`` (masks
        thresholded at ``cfg.box_mask_threshold`` for boxes, ``cfg.mask_threshold`` for
        clicks; box-prompted ones clipped to their box when ``cfg.clip_to_box``) and the
        frame's mean active rank (or None).
    """
    info = backend.info
    tensor, geometry = preprocess(image, info.input_size, info.pixel_mean, info.pixel_std)
    encoded = backend.encode(tensor)
    segments = find_segments(
        label, dataset.num_classes, dataset.min_segment_area, dataset.ignore_label
    )
    cut = cfg.box_mask_threshold if prompts == "box" else cfg.mask_threshold
    clip = cfg.clip_to_box and prompts == "box"
    rows = []
    for start in range(0, len(segments), DECODE_BATCH):
        chunk = segments[start : start + DECODE_BATCH]
        boxes = np.array([s.box for s in chunk], np.float64)
        logits = _decode_chunk(backend, encoded, geometry, chunk, boxes, prompts)
        raw = upscale_logits(logits, geometry) > cut
        clipped = clip_to_boxes(raw.copy(), boxes) if clip else raw
        for seg, mask, unclipped in zip(chunk, clipped, raw):
            x0, y0, x1, y1 = seg.box
            box_area = (x1 - x0 + 1) * (y1 - y0 + 1)
            boundaries = tuple(boundary_iou(seg.mask, mask, r) for r in BOUNDARY_RATIOS)
            rows.append(
                (
                    seg.class_id,
                    seg.area,
                    mask_iou(mask, seg.mask),
                    seg.area / box_area,
                    mask_iou(unclipped, seg.mask),
                    *boundaries,
                )
            )
    return rows, encoded.active_rank


def _mean(values: list[float]) -> float:
    return float(np.mean(values)) if values else float("nan")


def summarize_segments(
    rows: list[tuple], class_names: Sequence[str], large_area: int = LARGE_AREA
) -> dict:
    """Aggregate per-segment rows ``(class, area, iou, box_iou, unclipped_iou, boundary...)``.

    ``class_iou`` names each class seen by ``class_names[class]``.
    """
    by_class, boundary_by_class = defaultdict(list), defaultdict(list)
    for class_id, _, iou, _, _, boundary, _ in rows:
        by_class[class_id].append(iou)
        boundary_by_class[class_id].append(boundary)
    large = [r for r in rows if r[1] >= large_area]
    return {
        "miou": _mean([r[2] for r in rows]),
        "miou_large": _mean([r[2] for r in large]),
        "miou_unclipped": _mean([r[4] for r in rows]),
        "miou_large_unclipped": _mean([r[4] for r in large]),
        "box_baseline_miou": _mean([r[3] for r in rows]),
        "box_baseline_miou_large": _mean([r[3] for r in large]),
        "class_iou": {class_names[c]: _mean(v) for c, v in sorted(by_class.items())},
        "boundary_iou": _mean([r[5] for r in rows]),
        "boundary_iou_001": _mean([r[6] for r in rows]),
        "boundary_iou_large": _mean([r[5] for r in large]),
        "class_boundary_iou": {
            class_names[c]: _mean(v) for c, v in sorted(boundary_by_class.items())
        },
        "segments": len(rows),
        "segments_large": len(large),
    }


def evaluate_segments(
    options: EvalOptions, cfg: PipelineConfig, backend: Backend | None = None
) -> dict:
    """``--prompts box`` or ``point`` on ``options.data``: the JSON-ready report."""
    folder, indices = open_frames(options)
    count = len(indices)
    backend = backend or create_backend(options.backend_config())
    check_model_classes(backend.info.class_names, options.dataset)
    cfg = cfg.for_model(backend.info.box_mask_threshold)
    rows, ranks, started = [], [], time.perf_counter()
    for image, label in degraded_frames(options, folder, indices, f"eval {options.degrade}"):
        frame_rows, rank = score_frame(backend, image, label, options.dataset, cfg, options.prompts)
        rows.extend(frame_rows)
        if rank is not None:
            ranks.append(rank)
    seconds = (time.perf_counter() - started) / max(count, 1)
    return {
        "model": backend.info.model_id,
        "adapter": options.adapter,
        "prompts": options.prompts,
        "clip_to_box": cfg.clip_to_box and options.prompts == "box",
        "box_mask_threshold": cfg.box_mask_threshold,
        "degrade": options.degrade,
        "severities": list(options.severities),
        "seed": options.seed,
        "sequences": list(options.sequences),
        "backend": options.backend,
        "tta": options.tta,
        "precision": options.precision,
        "images": count,
        **summarize_segments(rows, options.dataset.class_names),
        "min_area": options.dataset.min_segment_area,
        "large_area": LARGE_AREA,
        "seconds_per_image": seconds,
        "mean_active_rank": _mean(ranks) if ranks else None,
        "active_rank_per_image": [round(r, 3) for r in ranks],
    }
