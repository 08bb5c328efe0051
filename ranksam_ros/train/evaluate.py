"""``ranksam eval``: box-prompt segment IoU, or promptless semantic mIoU (auto / grid).

Box mode: every connected component of every class (``min_area`` and up) is prompted with its
tight box; the metric is the mask IoU at source resolution, averaged over segments. The filled
box itself is scored the same way: the bar any box-prompted model must clear. Point mode
prompts each segment with one click on its most interior pixel instead (SAM's 1-click
protocol), which leans on the image far more than a box does.
"""

from __future__ import annotations

import time
from collections import defaultdict
from dataclasses import dataclass

import numpy as np
from tqdm import tqdm

from ranksam_ros.backends import Backend, create_backend
from ranksam_ros.config import (
    CAMVID_CLASSES,
    CAMVID_IGNORE_LABEL,
    TRAIN_SEVERITIES,
    BackendConfig,
    PipelineConfig,
)
from ranksam_ros.config_loader import load_config
from ranksam_ros.data.degrade import eval_degradation
from ranksam_ros.data.folder import SegmentationFolder
from ranksam_ros.data.segments import find_segments, interior_point
from ranksam_ros.graph.preprocess import preprocess
from ranksam_ros.graph.prompts import boxes_to_prompts
from ranksam_ros.pipeline.postprocess import clip_to_boxes, mask_iou, upscale_logits

LARGE_AREA = 1000
SEGMENT_PROMPTS = ("box", "point")  # one prompt per ground-truth segment
MIN_AREA = 64
DECODE_BATCH = 32


@dataclass(frozen=True)
class EvalOptions:
    """Arguments of ``ranksam eval`` (see ``ranksam eval --help``)."""

    model: str = "camvid-tiny"
    data: str = ""
    adapter: str = "none"
    prompts: str = "box"
    degrade: str = "none"
    severities: tuple[int, ...] = TRAIN_SEVERITIES
    seed: int = 0
    limit: int = 0
    backend: str = "torch"
    threads: int = 0
    tta: str = "none"
    min_area: int = MIN_AREA
    pipeline_overrides: tuple[str, ...] = ()


def _decode_chunk(
    backend: Backend, encoded, geometry, chunk: list, boxes: np.ndarray, prompts: str
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


def _segment_frame(
    backend: Backend,
    image: np.ndarray,
    label: np.ndarray,
    min_area: int,
    cfg: PipelineConfig,
    prompts: str = "box",
):
    """Score every segment of one frame, prompted with its tight box (or one interior click).

    Returns:
        Rows ``(class, area, mask IoU, filled-box IoU, mask IoU without clipping)`` (masks
        thresholded at ``cfg.box_mask_threshold`` for boxes, ``cfg.mask_threshold`` for
        clicks; box-prompted ones clipped to their box when ``cfg.clip_to_box``) and the
        frame's mean active rank (or None).
    """
    info = backend.info
    tensor, geometry = preprocess(image, info.input_size, info.pixel_mean, info.pixel_std)
    encoded = backend.encode(tensor)
    segments = find_segments(label, len(CAMVID_CLASSES), min_area, CAMVID_IGNORE_LABEL)
    rows = []
    for start in range(0, len(segments), DECODE_BATCH):
        chunk = segments[start : start + DECODE_BATCH]
        boxes = np.array([s.box for s in chunk], np.float64)
        logits = _decode_chunk(backend, encoded, geometry, chunk, boxes, prompts)
        cut = cfg.box_mask_threshold if prompts == "box" else cfg.mask_threshold
        raw = upscale_logits(logits, geometry) > cut
        clip = cfg.clip_to_box and prompts == "box"
        clipped = clip_to_boxes(raw.copy(), boxes) if clip else raw
        for seg, mask, unclipped in zip(chunk, clipped, raw):
            x0, y0, x1, y1 = seg.box
            box_area = (x1 - x0 + 1) * (y1 - y0 + 1)
            rows.append(
                (
                    seg.class_id,
                    seg.area,
                    mask_iou(mask, seg.mask),
                    seg.area / box_area,
                    mask_iou(unclipped, seg.mask),
                )
            )
    return rows, encoded.active_rank


def _mean(values: list[float]) -> float:
    return float(np.mean(values)) if values else float("nan")


def summarize_box(rows: list[tuple], large_area: int = LARGE_AREA) -> dict:
    """Aggregate per-segment rows ``(class, area, iou, box_iou, unclipped_iou)``."""
    by_class = defaultdict(list)
    for class_id, _, iou, *_ in rows:
        by_class[class_id].append(iou)
    large = [r for r in rows if r[1] >= large_area]
    return {
        "miou": _mean([r[2] for r in rows]),
        "miou_large": _mean([r[2] for r in large]),
        "miou_unclipped": _mean([r[4] for r in rows]),
        "miou_large_unclipped": _mean([r[4] for r in large]),
        "box_baseline_miou": _mean([r[3] for r in rows]),
        "box_baseline_miou_large": _mean([r[3] for r in large]),
        "class_iou": {CAMVID_CLASSES[c]: _mean(v) for c, v in sorted(by_class.items())},
        "segments": len(rows),
        "segments_large": len(large),
    }


def evaluate(options: EvalOptions, backend: Backend | None = None) -> dict:
    """Run the evaluation described by ``options`` and return the JSON-ready report."""
    cfg = load_config(PipelineConfig, None, options.pipeline_overrides)
    if options.prompts not in SEGMENT_PROMPTS:
        from ranksam_ros.train.evaluate_auto import evaluate_auto

        return evaluate_auto(options, backend, cfg)
    folder = SegmentationFolder(options.data)
    backend = backend or create_backend(
        BackendConfig(
            backend=options.backend,
            model=options.model,
            adapter=options.adapter,
            threads=options.threads,
            tta=options.tta,
        )
    )
    count = len(folder) if options.limit <= 0 else min(options.limit, len(folder))
    rows, ranks, started = [], [], time.perf_counter()
    for index in tqdm(range(count), desc=f"eval {options.degrade}", leave=False):
        image, label = folder[index]
        image, _, _ = eval_degradation(
            image, options.degrade, options.seed, index, options.severities
        )
        frame_rows, rank = _segment_frame(
            backend, image, label, options.min_area, cfg, options.prompts
        )
        rows.extend(frame_rows)
        if rank is not None:
            ranks.append(rank)
    seconds = (time.perf_counter() - started) / max(count, 1)
    report = {
        "model": backend.info.model_id,
        "adapter": options.adapter,
        "prompts": options.prompts,
        "clip_to_box": cfg.clip_to_box and options.prompts == "box",
        "degrade": options.degrade,
        "severities": list(options.severities),
        "seed": options.seed,
        "backend": options.backend,
        "tta": options.tta,
        "images": count,
        **summarize_box(rows),
        "min_area": options.min_area,
        "large_area": LARGE_AREA,
        "seconds_per_image": seconds,
        "mean_active_rank": _mean(ranks) if ranks else None,
        "active_rank_per_image": [round(r, 3) for r in ranks],
    }
    return report


def format_report(report: dict) -> str:
    """Human-readable summary of an evaluation report."""
    lines = [f"model {report['model']}  prompts {report['prompts']}  degrade {report['degrade']}"]
    for key in (
        "miou",
        "miou_large",
        "miou_unclipped",
        "miou_large_unclipped",
        "box_baseline_miou",
        "box_baseline_miou_large",
    ):
        if key in report:
            lines.append(f"  {key:<24} {report[key]:.4f}")
    for key in ("images", "segments", "prompts_per_image", "seconds_per_image", "mean_active_rank"):
        if report.get(key) is not None:
            value = report[key]
            lines.append(
                f"  {key:<24} {value:.4f}" if isinstance(value, float) else f"  {key:<24} {value}"
            )
    classes = "  ".join(f"{k} {v:.3f}" for k, v in report.get("class_iou", {}).items())
    lines.append(f"  class_iou: {classes}")
    return "\n".join(lines)
