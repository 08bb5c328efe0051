"""Promptless evaluation: semantic mIoU of automatic prompts vs SAM's 32x32 grid generator.

Both modes use the same model and name every mask the same way (class probabilities of the
prompt predictor pooled over the mask), so the comparison isolates prompt selection. Pixels no
mask covers take the predictor's most likely class in both modes when ``fill_semantic`` is on
(the default), and count as misses for their true class when it is off.
"""

from __future__ import annotations

import time
from dataclasses import replace

import numpy as np
from tqdm import tqdm

from ranksam_ros.backends import create_backend
from ranksam_ros.config import CAMVID_CLASSES, CAMVID_IGNORE_LABEL, BackendConfig, PipelineConfig
from ranksam_ros.data.degrade import eval_degradation
from ranksam_ros.data.folder import SegmentationFolder
from ranksam_ros.graph.preprocess import preprocess
from ranksam_ros.pipeline.pipeline import Pipeline
from ranksam_ros.pipeline.postprocess import fill_unassigned, paint_labels
from ranksam_ros.pipeline.result import UNASSIGNED

NUM_CLASSES = len(CAMVID_CLASSES)


class ConfusionMatrix:
    """Pixel confusion of true classes (rows) vs predicted classes + "unassigned" (last column)."""

    def __init__(self, num_classes: int = NUM_CLASSES) -> None:
        self.num_classes = num_classes
        self.matrix = np.zeros((num_classes, num_classes + 1), np.int64)

    def add(self, truth: np.ndarray, predicted: np.ndarray) -> None:
        valid = truth < self.num_classes
        pred = predicted[valid].astype(np.int64)
        pred[pred >= self.num_classes] = self.num_classes
        index = truth[valid].astype(np.int64) * (self.num_classes + 1) + pred
        self.matrix += np.bincount(index, minlength=self.matrix.size).reshape(self.matrix.shape)

    def class_iou(self) -> np.ndarray:
        """IoU per class (NaN for classes absent from both truth and prediction)."""
        tp = np.diag(self.matrix[:, : self.num_classes]).astype(np.float64)
        fn = self.matrix.sum(1) - tp
        fp = self.matrix[:, : self.num_classes].sum(0) - tp
        denominator = tp + fp + fn
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(denominator > 0, tp / denominator, np.nan)


def pool_classes(probs: np.ndarray, masks: np.ndarray, geometry) -> np.ndarray:
    """Class of each source-resolution mask from class probabilities on the prompt grid.

    Args:
        probs: ``(C, G, G)`` class probabilities covering the padded network input.
        masks: ``(N, H, W)`` bool in source pixels.
        geometry: The frame's :class:`ResizeInfo`.

    Returns:
        ``(N,)`` class indices (argmax of the mask-averaged probabilities).
    """
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


class GridSegmenter:
    """SAM's ``SamAutomaticMaskGenerator`` (32x32 grid, official filters) on our model."""

    def __init__(self, model, points_per_side: int = 32) -> None:
        from segment_anything import SamAutomaticMaskGenerator

        from ranksam_ros.backends.torch_backend import TorchBackend

        self.backend = TorchBackend(model)
        self.generator = SamAutomaticMaskGenerator(model.sam, points_per_side=points_per_side)
        self.points = points_per_side**2

    def __call__(self, image: np.ndarray) -> tuple[np.ndarray, np.ndarray, int]:
        """Semantic maps ``(H, W)`` uint8 (masks only, densely filled) and prompts decoded."""
        records = self.generator.generate(image)
        info = self.backend.info
        tensor, geometry = preprocess(image, info.input_size, info.pixel_mean, info.pixel_std)
        semantic = np.full(image.shape[:2], UNASSIGNED, np.uint8)
        encoded = self.backend.encode(tensor)  # the generator's own embedding is private
        probs = self.backend.predict_prompts(encoded, tensor).class_probs
        if records:
            masks = np.stack([r["segmentation"] for r in records])
            scores = np.asarray([r["predicted_iou"] for r in records])
            classes = pool_classes(probs, masks, geometry)
            semantic = paint_labels(masks, scores, classes, UNASSIGNED, np.uint8)
        return semantic, fill_unassigned(semantic, probs, geometry, UNASSIGNED), self.points


def evaluate_auto(options, backend=None, pipeline_cfg: PipelineConfig | None = None) -> dict:
    """``--prompts auto`` (our pipeline) or ``--prompts grid`` (SAM's generator) on a folder."""
    pipeline_cfg = pipeline_cfg or PipelineConfig()
    folder = SegmentationFolder(options.data)
    count = len(folder) if options.limit <= 0 else min(options.limit, len(folder))
    if options.prompts == "grid":
        if options.backend != "torch":
            raise ValueError(
                "--prompts grid runs segment-anything's generator: use --backend torch"
            )
        from ranksam_ros.modeling.registry import build_model

        segmenter = GridSegmenter(build_model(options.model, adapter=options.adapter))
        model_id = segmenter.backend.info.model_id
    elif options.prompts == "auto":
        backend = backend or create_backend(
            BackendConfig(
                backend=options.backend,
                model=options.model,
                adapter=options.adapter,
                threads=options.threads,
                tta=options.tta,
            )
        )
        # Filling is done here, after the masks-only map is scored, so both are reported.
        pipeline = Pipeline(backend, replace(pipeline_cfg, fill_semantic=False))
        model_id = backend.info.model_id
    else:
        raise ValueError(f"--prompts {options.prompts!r}: choose box, auto or grid")
    masks_only, dense = ConfusionMatrix(), ConfusionMatrix()
    decoded, candidates, duplicates, ranks = [], [], [], []
    started = time.perf_counter()
    for index in tqdm(range(count), desc=f"eval {options.prompts} {options.degrade}", leave=False):
        image, label = folder[index]
        image, _, _ = eval_degradation(
            image, options.degrade, options.seed, index, options.severities
        )
        if options.prompts == "grid":
            semantic, filled, prompts = segmenter(image)
            decoded.append(prompts)
        else:
            frame = pipeline.encode(image)
            result = pipeline.segment(frame)
            semantic = result.semantic
            filled = pipeline.dense_semantic(frame, semantic)
            decoded.append(result.prompts_decoded)
            candidates.append(result.candidates)
            duplicates.append(result.duplicates)
            if result.active_rank is not None:
                ranks.append(result.active_rank)
        label = label.copy()
        label[label == CAMVID_IGNORE_LABEL] = 255
        masks_only.add(label, semantic)
        dense.add(label, filled)
    seconds = (time.perf_counter() - started) / max(count, 1)
    fill = pipeline_cfg.fill_semantic
    iou = (dense if fill else masks_only).class_iou()
    report = {
        "model": model_id,
        "adapter": options.adapter,
        "prompts": options.prompts,
        "degrade": options.degrade,
        "severities": list(options.severities),
        "seed": options.seed,
        "backend": options.backend,
        "images": count,
        "miou": float(np.nanmean(iou)),
        "fill_semantic": fill,
        "miou_masks_only": float(np.nanmean(masks_only.class_iou())),
        "miou_filled": float(np.nanmean(dense.class_iou())),
        "class_iou": {name: float(v) for name, v in zip(CAMVID_CLASSES, iou)},
        "prompts_per_image": float(np.mean(decoded)),
        "seconds_per_image": seconds,
    }
    if candidates:
        report["candidates_per_image"] = float(np.mean(candidates))
        report["duplicates_per_image"] = float(np.mean(duplicates))
        report["mean_active_rank"] = float(np.mean(ranks)) if ranks else None
    return report
