"""The values that cross the engine seam: model description, encoded frame, prompt maps."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


@dataclass(frozen=True)
class ModelInfo:
    """What the pipeline needs to know about a loaded model.

    Attributes:
        model_id: Identity string (model, adapter, engine).
        input_size: Side of the square network input.
        pixel_mean, pixel_std: Normalisation (0-255 scale), RGB.
        mask_size: Side of the low-resolution mask logits.
        class_names: Classes the model names (its semantic head's, else its prompt
            predictor's; empty without either).
        prompt_predictor: The model proposes point prompts (``predict_prompts`` works).
        semantic_head: Encoding also gives class probabilities (``Encoded.semantic``).
        tasks: Dense tasks ``predict_tasks`` computes (loaded on request).
        box_mask_threshold: The model's calibrated logit cut of box-prompted masks (its
            model card's ``calibration``), or None: the pipeline's default applies.
    """

    model_id: str
    input_size: int
    pixel_mean: tuple[float, float, float]
    pixel_std: tuple[float, float, float]
    mask_size: int
    class_names: tuple[str, ...] = ()
    prompt_predictor: bool = False
    semantic_head: bool = False
    tasks: tuple[str, ...] = ()
    box_mask_threshold: float | None = None
    extras: dict = field(default_factory=dict)


@dataclass
class Encoded:
    """Result of encoding one frame.

    Attributes:
        embedding: ``(1, C, h, w)`` float32.
        active_rank: Mean active adapter rank over gated layers (None without gates).
        layer_ranks: Active rank per gated layer (empty without gates).
        detail: Per-image decoder detail ``(1, C', m, m)`` float32: the conv encoder's fine
            features or the detail head's (None when the model has neither).
        semantic: Class probabilities of the dense semantic head ``(1, K, m, m)`` float32
            (None without one).
    """

    embedding: np.ndarray
    active_rank: float | None = None
    layer_ranks: dict[str, float] = field(default_factory=dict)
    detail: np.ndarray | None = None
    semantic: np.ndarray | None = None


@dataclass
class PromptMaps:
    """The prompt predictor's output for one frame, both ``(C, G, G)`` float32.

    Attributes:
        confidence: Per-class prompt confidence in [0, 1]; peaks become point prompts.
        class_probs: Per-cell class probabilities (sum 1 over classes); pooled over a mask
            they name it.
    """

    confidence: np.ndarray
    class_probs: np.ndarray

    def __post_init__(self) -> None:
        if self.confidence.ndim != 3 or self.confidence.shape != self.class_probs.shape:
            raise ValueError(
                "prompt maps must be two (C, G, G) arrays of one shape, got "
                f"{self.confidence.shape} and {self.class_probs.shape}"
            )
