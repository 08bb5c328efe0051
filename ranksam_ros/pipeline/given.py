"""Given prompts (points and boxes in source pixels) decoded into masks.

The external and hybrid prompt modes of the node and ``ranksam eval`` with box or click
prompts come through here; automatic prompts take ``pipeline.prompts.decode_with_deletion``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ranksam_ros.backends.base import Backend
from ranksam_ros.config import PipelineConfig
from ranksam_ros.graph.preprocess import ResizeInfo
from ranksam_ros.graph.prompts import boxes_to_prompts
from ranksam_ros.graph.types import Encoded
from ranksam_ros.pipeline.postprocess import clip_to_boxes
from ranksam_ros.pipeline.prompts import Candidates, Decoded, DecodedMask


@dataclass
class PromptSet:
    """Prompts given from outside, in source pixels.

    Attributes:
        points: ``(N, 2)`` single foreground points (x, y).
        boxes: ``(M, 4)`` boxes x0, y0, x1, y1, pixel-inclusive (x1, y1 is the last pixel
            inside the object), the convention the shipped model is trained with.
        classes: Optional class index per prompt (points first, then boxes); -1 = unknown.
    """

    points: np.ndarray | None = None
    boxes: np.ndarray | None = None
    classes: np.ndarray | None = None


def decode_given(
    backend: Backend,
    cfg: PipelineConfig,
    encoded: Encoded,
    geometry: ResizeInfo,
    prompts: PromptSet,
) -> tuple[Candidates, Decoded]:
    """Decode given point and box prompts: one mask each, the best of SAM's candidates.

    Returns:
        The prompts as candidates (score 1, network-input coordinates) and their masks, box
        masks clipped to their box when ``cfg.clip_to_box``.

    Raises:
        ValueError: non-finite coordinates, or a class list of another length.
    """
    points = (
        np.zeros((0, 2))
        if prompts.points is None
        else np.asarray(prompts.points, float).reshape(-1, 2)
    )
    boxes = (
        np.zeros((0, 4))
        if prompts.boxes is None
        else np.asarray(prompts.boxes, float).reshape(-1, 4)
    )
    if not (np.isfinite(points).all() and np.isfinite(boxes).all()):
        raise ValueError("prompt coordinates must be finite")
    count = len(points) + len(boxes)
    classes = (
        np.full(count, -1, np.int64)
        if prompts.classes is None
        else np.asarray(prompts.classes, np.int64)
    )
    if len(classes) != count:
        raise ValueError(f"{len(classes)} prompt classes for {count} prompts")
    centres = np.concatenate([points, (boxes[:, :2] + boxes[:, 2:]) / 2.0])
    xy = geometry.to_input(centres) if count else np.zeros((0, 2))
    candidates = Candidates(np.zeros((count, 2), np.int64), xy, classes, np.ones(count, np.float32))
    decoded = Decoded()
    outputs = []
    if len(points):
        coords = geometry.to_input(points)[:, None, :].astype(np.float32)
        outputs.append(backend.decode(encoded, coords, np.ones((len(points), 1), np.float32), True))
    if len(boxes):
        coords, labels = boxes_to_prompts(geometry.to_input(boxes.reshape(-1, 2)).reshape(-1, 4))
        outputs.append(backend.decode(encoded, coords, labels, False))
    prompt_boxes = [None] * len(points) + list(boxes)
    cuts = logit_cuts(cfg, prompt_boxes)
    for logits, iou in outputs:
        best = np.argmax(iou, axis=1)
        for lg, score in zip(logits[np.arange(len(best)), best], iou[np.arange(len(best)), best]):
            index = len(decoded.accepted)
            decoded.accepted.append(
                DecodedMask(index, lg, lg > cuts[index], float(score), prompt_boxes[index])
            )
    decoded.decoded = count
    decoded.tried = list(range(count))
    if cfg.clip_to_box and len(boxes):
        _clip_low_res(backend, decoded, geometry)
    return candidates, decoded


def _clip_low_res(backend: Backend, decoded: Decoded, geometry: ResizeInfo) -> None:
    """Clip the low-res masks of box prompts too (cells touching the box stay).

    Duplicate removal and the hybrid mode's prompt filter then compare the masks that will
    be published, not their spill over the box edges.
    """
    info = backend.info
    corners = box_array([m.box for m in decoded.accepted])  # a new array: safe to shift
    corners[:, 2:] += 1.0  # pixel-inclusive last pixel -> its far edge
    cells = geometry.to_input(corners.reshape(-1, 2)).reshape(-1, 4)
    cells *= info.mask_size / info.input_size  # NaN rows (points) stay NaN
    clipped = clip_to_boxes(np.stack([m.mask for m in decoded.accepted]), cells)
    for record, mask in zip(decoded.accepted, clipped):
        record.mask = mask


def logit_cuts(cfg: PipelineConfig, boxes: list[np.ndarray | None]) -> np.ndarray:
    """Per-mask logit cut ``(K,)``.

    ``box_mask_threshold`` where the prompt was a box, ``mask_threshold`` where it was a
    point (``None``).
    """
    is_box = np.array([box is not None for box in boxes], bool)
    return np.where(is_box, cfg.box_mask_threshold, cfg.mask_threshold)


def box_array(boxes: list[np.ndarray | None]) -> np.ndarray:
    """Prompt boxes ``(K, 4)`` float64, NaN rows for point prompts."""
    return np.array([np.full(4, np.nan) if box is None else box for box in boxes], np.float64)
