"""Configs of a training run: what to train, on what, how long, with which loss.

The stage-specific parts are read by the stage objects in :mod:`ranksam_ros.train.stages`;
YAML files under ``config/train/`` and ``--set key=value`` overrides fill them.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ranksam_ros.adapters.registry import AdapterConfig
from ranksam_ros.config import DataConfig, check, check_choice

_check, _check_choice = check, check_choice


@dataclass(frozen=True)
class OptimConfig:
    """AdamW, linear warm-up, cosine decay; the run ends at ``steps`` or ``time_limit_min``."""

    steps: int = 4000
    batch_size: int = 4
    lr: float = 1e-3
    gate_lr: float = 1e-3
    weight_decay: float = 0.01
    warmup_steps: int = 100
    min_lr_ratio: float = 0.05
    grad_clip: float = 1.0
    time_limit_min: float = 0.0

    def __post_init__(self) -> None:
        _check(self.steps >= 1, "optim.steps must be >= 1")
        _check(self.batch_size >= 1, "optim.batch_size must be >= 1")
        _check(self.lr > 0, "optim.lr must be > 0")


@dataclass(frozen=True)
class LossConfig:
    """Mask loss: BCE + dice (+ optional focal, SAM's choice), MSE on predicted IoU.

    From-scratch training stalls on SAM's focal-dominated 20:1 mix (all-background is a deep
    local minimum for tiny segments); BCE + dice as in Mask2Former learns from the first steps.

    ``point_samples`` > 0 computes the mask loss on that many input-pixel points per mask
    (bilinear logits, mostly uncertain points); 0 uses the mask grid.
    """

    focal_weight: float = 0.0
    bce_weight: float = 5.0
    dice_weight: float = 5.0
    iou_weight: float = 1.0
    rank_budget_weight: float = 0.0
    # Cross-entropy of the dense semantic head (models with one), classes weighted by
    # (median frequency / frequency) ** semantic_class_balance over the training frames.
    semantic_weight: float = 0.0
    semantic_class_balance: float = 0.5
    # PA-SAM's auxiliary losses (uncertainty band, refined and coarse maps) of a prompt adapter.
    prompt_adapter_weight: float = 1.0
    point_samples: int = 4096
    iou_samples: int = 1024


SAM_PARTS = ("image_encoder", "prompt_encoder", "mask_decoder", "detail_head", "semantic_head")


@dataclass(frozen=True)
class TrainConfig:
    """One training run.

    ``stage``: a row of :data:`ranksam_ros.train.stages.STAGES`: foundation (SAM and its
    heads, or part of them with ``freeze``), adapter (adapters only, on degraded frames) or
    prompt (the prompt predictor on frozen embeddings). ``model`` names the architecture or
    the frozen base; ``init`` optionally starts a foundation run from the weights of one of
    our checkpoints (a later, lower-learning-rate phase). ``freeze``: parts a foundation run
    keeps fixed (``image_encoder``, ``prompt_encoder``, ``mask_decoder``, heads), e.g.
    ``[image_encoder]`` to retrain only the decoder, which leaves the embeddings (and so the
    prompt predictor and the encoder adapters trained on them) valid.
    """

    stage: str = "foundation"
    model: str = "tiny"
    init: str = ""
    freeze: tuple[str, ...] = ()
    # Regular expressions (fullmatch) of parameter names that train, e.g. the decoder parts
    # PA-SAM retrains (`sam.mask_decoder.output_upscaling.*`); with an adapter stage, besides
    # the adapter. Empty: the stage's default (freeze decides for the foundation stage).
    trainable: tuple[str, ...] = ()
    adapter: AdapterConfig | None = None
    data: DataConfig = field(default_factory=DataConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    out_dir: str = "runs/train"
    seed: int = 0
    threads: int = 0
    log_every: int = 20
    save_every: int = 200
    eval_limit: int = 0

    def __post_init__(self) -> None:
        for part in self.freeze:
            _check_choice("freeze entry", part, SAM_PARTS)
        _check(len(set(self.freeze)) < len(SAM_PARTS), "freeze leaves nothing to train")
