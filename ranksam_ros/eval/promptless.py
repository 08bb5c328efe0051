"""Promptless evaluation: semantic mIoU of automatic prompts vs SAM's 32x32 grid generator.

Both modes use the same model and name every mask the same way (the prompt predictor's class
probabilities pooled over the mask, :mod:`ranksam_ros.pipeline.class_pooling`), so the
comparison isolates prompt selection. Pixels no mask covers take the predictor's most likely
class in both modes when ``fill_semantic`` is on (the default), and count as misses for their
true class when it is off.
"""

from __future__ import annotations

import time
from dataclasses import replace

import numpy as np

from ranksam_ros.backends import Backend, create_backend
from ranksam_ros.config import PipelineConfig
from ranksam_ros.eval.confusion import ConfusionMatrix
from ranksam_ros.eval.frames import check_model_classes, degraded_frames, open_frames
from ranksam_ros.eval.options import PROMPTLESS_MODES, EvalOptions
from ranksam_ros.graph.preprocess import preprocess
from ranksam_ros.pipeline.class_pooling import pool_class_probs, source_mask_weights
from ranksam_ros.pipeline.pipeline import Pipeline
from ranksam_ros.pipeline.postprocess import fill_unassigned, paint_labels
from ranksam_ros.pipeline.result import UNASSIGNED

IGNORED = 255  # what ignored truth pixels become: above every class, so never counted


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
            weights = source_mask_weights(masks, geometry, grid=probs.shape[-1])
            classes = np.argmax(pool_class_probs(weights, probs), axis=1)
            semantic = paint_labels(masks, scores, classes, UNASSIGNED, np.uint8)
        return semantic, fill_unassigned(semantic, probs, geometry, UNASSIGNED), self.points


class _SemanticSegmenter:
    """The semantic head alone: every pixel takes its most likely class, no SAM decode."""

    def __init__(self, backend: Backend) -> None:
        if not backend.info.semantic_head:
            raise ValueError(f"--prompts semantic: {backend.info.model_id} has no semantic head")
        self.backend = backend

    def __call__(self, image: np.ndarray) -> tuple[np.ndarray, np.ndarray, int]:
        info = self.backend.info
        tensor, geometry = preprocess(image, info.input_size, info.pixel_mean, info.pixel_std)
        probs = self.backend.encode(tensor).semantic[0]
        holes = np.full(image.shape[:2], UNASSIGNED, np.uint8)
        dense = fill_unassigned(holes, probs, geometry, UNASSIGNED)
        return dense, dense, 0


class _AutoSegmenter:
    """Our pipeline with automatic prompts, returning what :class:`GridSegmenter` does."""

    def __init__(self, backend: Backend, cfg: PipelineConfig) -> None:
        # Filling is done here, after the masks-only map is scored, so both are reported.
        self.pipeline = Pipeline(backend, replace(cfg, fill_semantic=False))
        self.candidates: list[int] = []
        self.duplicates: list[int] = []
        self.ranks: list[float] = []

    def __call__(self, image: np.ndarray) -> tuple[np.ndarray, np.ndarray, int]:
        pipeline = self.pipeline
        frame = pipeline.encode(image, need_maps=pipeline.needs_prompt_maps(auto=True))
        result = self.pipeline.segment(frame)
        self.candidates.append(result.candidates)
        self.duplicates.append(result.duplicates)
        if result.active_rank is not None:
            self.ranks.append(result.active_rank)
        filled = self.pipeline.dense_semantic(frame, result.semantic)
        return result.semantic, filled, result.prompts_decoded


def _segmenter(options: EvalOptions, cfg: PipelineConfig, backend: Backend | None):
    """The ``--prompts`` mode's segmenter and the model it runs."""
    if options.prompts == "grid":
        if options.backend != "torch":
            raise ValueError(
                "--prompts grid runs segment-anything's generator: use --backend torch"
            )
        from ranksam_ros.modeling.registry import build_model

        segmenter = GridSegmenter(build_model(options.model, adapter=options.adapter))
        return segmenter, segmenter.backend
    if options.prompts in ("auto", "semantic"):
        backend = backend or create_backend(options.backend_config())
        if options.prompts == "semantic":
            return _SemanticSegmenter(backend), backend
        return _AutoSegmenter(backend, cfg), backend
    raise ValueError(f"--prompts {options.prompts!r}: choose one of {', '.join(PROMPTLESS_MODES)}")


def evaluate_promptless(
    options: EvalOptions,
    backend: Backend | None = None,
    pipeline_cfg: PipelineConfig | None = None,
) -> dict:
    """``--prompts auto`` (our pipeline) or ``--prompts grid`` (SAM's generator) on a folder."""
    pipeline_cfg = pipeline_cfg or PipelineConfig()
    dataset = options.dataset
    folder, indices = open_frames(options)
    count = len(indices)
    segmenter, backend = _segmenter(options, pipeline_cfg, backend)
    check_model_classes(backend.info.class_names, dataset)
    masks_only, dense = ConfusionMatrix(dataset.num_classes), ConfusionMatrix(dataset.num_classes)
    decoded, started = [], time.perf_counter()
    desc = f"eval {options.prompts} {options.degrade}"
    for image, label in degraded_frames(options, folder, indices, desc):
        semantic, filled, prompts = segmenter(image)
        decoded.append(prompts)
        label = label.copy()
        label[label == dataset.ignore_label] = IGNORED
        masks_only.add(label, semantic)
        dense.add(label, filled)
    seconds = (time.perf_counter() - started) / max(count, 1)
    fill = pipeline_cfg.fill_semantic
    iou = (dense if fill else masks_only).class_iou()
    report = {
        "model": backend.info.model_id,
        "adapter": options.adapter,
        "prompts": options.prompts,
        "degrade": options.degrade,
        "severities": list(options.severities),
        "seed": options.seed,
        "sequences": list(options.sequences),
        "backend": options.backend,
        "precision": options.precision,
        "images": count,
        "miou": float(np.nanmean(iou)),
        "fill_semantic": fill,
        "miou_masks_only": float(np.nanmean(masks_only.class_iou())),
        "miou_filled": float(np.nanmean(dense.class_iou())),
        "class_iou": {name: float(v) for name, v in zip(dataset.class_names, iou)},
        "prompts_per_image": float(np.mean(decoded)),
        "seconds_per_image": seconds,
    }
    if isinstance(segmenter, _AutoSegmenter):
        report["candidates_per_image"] = float(np.mean(segmenter.candidates))
        report["duplicates_per_image"] = float(np.mean(segmenter.duplicates))
        ranks = segmenter.ranks
        report["mean_active_rank"] = float(np.mean(ranks)) if ranks else None
    return report
