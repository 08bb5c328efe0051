"""Training samples: an augmented (optionally degraded) frame, its prompts and target masks."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from PIL import Image

from ranksam_ros.config import DataConfig, SamArchConfig
from ranksam_ros.data.augment import augment, copy_paste
from ranksam_ros.data.degrade import degrade
from ranksam_ros.data.folder import SegmentationFolder
from ranksam_ros.data.segments import box_prompt, find_segments, point_prompts
from ranksam_ros.graph.preprocess import normalize_pad, resize_longest

MAX_POINTS = 3
IGNORE_INDEX = -100  # cross-entropy's default ignore value


@dataclass
class Sample:
    """One frame ready for the model (all coordinates in network-input pixels).

    Attributes:
        image: Normalised padded input ``(3, S, S)``.
        boxes: Box prompts ``(Nb, 4)``; ``box_masks`` their targets ``(Nb, S, S)``.
        points: Point prompts ``(Np, 3, 2)`` padded with label -1; ``point_labels (Np, 3)``;
            ``point_masks`` their targets ``(Np, S, S)``.
        valid_hw: Unpadded ``(h, w)`` region where the loss is computed.
        degradation: Name of the applied degradation (``none`` if clean).
        semantic: Class of every input pixel ``(S, S)`` int64; ignore and padding are
            :data:`IGNORE_INDEX`.
    """

    image: torch.Tensor
    boxes: torch.Tensor
    box_masks: torch.Tensor
    points: torch.Tensor
    point_labels: torch.Tensor
    point_masks: torch.Tensor
    valid_hw: tuple[int, int]
    degradation: str
    semantic: torch.Tensor | None = None


def _pick_degradation(cfg: DataConfig, rng: np.random.Generator) -> tuple[str, int]:
    if not cfg.apply_degrade or not cfg.degrade.kinds or rng.random() < cfg.degrade.clean_prob:
        return "none", 0
    kind = cfg.degrade.kinds[int(rng.integers(len(cfg.degrade.kinds)))]
    severity = cfg.degrade.severities[int(rng.integers(len(cfg.degrade.severities)))]
    return kind, int(severity)


def _pad_mask(mask: np.ndarray, size: int) -> np.ndarray:
    out = np.zeros((size, size), np.float32)
    out[: mask.shape[0], : mask.shape[1]] = mask
    return out


@dataclass
class PreparedFrame:
    """An augmented, optionally degraded frame resized to the network input.

    Attributes:
        resized: RGB ``(h, w, 3)`` uint8 after the longest-side resize.
        label: Class indices ``(h, w)`` resized with nearest neighbours.
        min_area: ``DataConfig.min_segment_area`` scaled to this resolution.
        degradation: Applied degradation (``none`` when clean).
    """

    resized: np.ndarray
    label: np.ndarray
    min_area: int
    degradation: str


def prepare_frame(
    folder: SegmentationFolder,
    index: int,
    arch: SamArchConfig,
    cfg: DataConfig,
    rng: np.random.Generator,
) -> PreparedFrame:
    """Augment, maybe degrade, and resize frame ``index`` (shared by every training stage)."""
    image, label = folder[index]
    if cfg.copy_paste_prob > 0 and rng.random() < cfg.copy_paste_prob:
        donor_image, donor_label = folder[int(rng.integers(len(folder)))]
        classes = tuple(cfg.class_names.index(name) for name in cfg.thing_classes)
        image, label = copy_paste(image, label, donor_image, donor_label, classes, rng)
    image, label = augment(
        image,
        label,
        rng,
        cfg.zoom_prob,
        cfg.max_zoom,
        cfg.flip,
        cfg.color_jitter,
        cfg.min_zoom,
        cfg.ignore_label,
        cfg.style_jitter,
        cfg.grayscale_prob,
    )
    kind, severity = _pick_degradation(cfg, rng)
    if kind != "none":
        image = degrade(image, kind, severity, rng)
    resized = resize_longest(image, arch.img_size)
    h, w = resized.shape[:2]
    small_label = np.asarray(Image.fromarray(label).resize((w, h), Image.NEAREST))
    min_area = max(4, int(round(cfg.min_segment_area * h * w / float(label.size))))
    return PreparedFrame(resized, small_label, min_area, kind)


def make_sample(
    folder: SegmentationFolder,
    index: int,
    arch: SamArchConfig,
    cfg: DataConfig,
    rng: np.random.Generator,
) -> Sample:
    """Build the training sample for frame ``index`` with randomness from ``rng``."""
    frame = prepare_frame(folder, index, arch, cfg, rng)
    resized, h, w = frame.resized, *frame.resized.shape[:2]
    segments = find_segments(frame.label, cfg.num_classes, frame.min_area, cfg.ignore_label)
    order = rng.permutation(len(segments))[: cfg.prompts_per_image]
    boxes, box_masks, points, labels, point_masks = [], [], [], [], []
    for i in order:
        seg = segments[int(i)]
        if rng.random() < cfg.point_prompt_prob:
            one_click = cfg.one_click_prob > 0 and rng.random() < cfg.one_click_prob
            count = 1 if one_click else int(rng.integers(1, MAX_POINTS + 1))
            coords = np.zeros((MAX_POINTS, 2))
            coords[:count] = point_prompts(seg, count, rng)
            lab = np.full(MAX_POINTS, -1.0)
            lab[:count] = 1.0
            points.append(coords)
            labels.append(lab)
            point_masks.append(_pad_mask(seg.mask, arch.img_size))
        else:
            boxes.append(box_prompt(seg, cfg.box_jitter, rng))
            box_masks.append(_pad_mask(seg.mask, arch.img_size))
    size = arch.img_size
    return Sample(
        image=torch.from_numpy(normalize_pad(resized, size, arch.pixel_mean, arch.pixel_std)),
        boxes=torch.tensor(np.array(boxes).reshape(-1, 4), dtype=torch.float32),
        box_masks=torch.from_numpy(np.array(box_masks).reshape(-1, size, size)),
        points=torch.tensor(np.array(points).reshape(-1, MAX_POINTS, 2), dtype=torch.float32),
        point_labels=torch.tensor(np.array(labels).reshape(-1, MAX_POINTS), dtype=torch.float32),
        point_masks=torch.from_numpy(np.array(point_masks).reshape(-1, size, size)),
        valid_hw=(h, w),
        degradation=frame.degradation,
        semantic=torch.from_numpy(semantic_target(frame.label, size, cfg)),
    )


def semantic_target(label: np.ndarray, size: int, cfg: DataConfig) -> np.ndarray:
    """Class indices padded to ``(size, size)`` int64; ignore and padding -> IGNORE_INDEX."""
    out = np.full((size, size), IGNORE_INDEX, np.int64)
    valid = label.astype(np.int64)
    valid[(valid >= cfg.num_classes) | (valid == cfg.ignore_label)] = IGNORE_INDEX
    out[: label.shape[0], : label.shape[1]] = valid
    return out


def class_weights(folder: SegmentationFolder, cfg: DataConfig, exponent: float) -> torch.Tensor:
    """Median-frequency class weights ``(num_classes,)`` over a folder's labels.

    ``(median(f) / f_c) ** exponent`` with ``f_c`` the share of labelled pixels of class
    ``c`` (SegNet's balancing at ``exponent`` 1; 0 gives equal weights). Classes absent from
    every frame get the largest weight of the others.
    """
    counts = np.zeros(cfg.num_classes, np.float64)
    for index in range(len(folder)):
        label = folder[index][1]
        counts += np.bincount(label.ravel(), minlength=256)[: cfg.num_classes]
    present = counts > 0
    if not present.any():
        raise ValueError(f"{folder.root}: no labelled pixel of any of {cfg.num_classes} classes")
    freq = counts / counts.sum()
    weights = np.ones(cfg.num_classes)
    weights[present] = (np.median(freq[present]) / freq[present]) ** exponent
    weights[~present] = weights[present].max()
    return torch.tensor(weights, dtype=torch.float32)
