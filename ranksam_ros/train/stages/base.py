"""What every training stage provides to the loop: modules, samples, a loss, its saved file.

The loop (:mod:`ranksam_ros.train.loop`) is the same for every stage: it asks the stage for
a batch, runs the stage's loss module (wrapped by DDP when distributed), steps the optimiser
over the stage's parameter groups, checkpoints the stage's trainable state and finally lets
the stage write its result. A new kind of training (e.g. multi-task heads) is a new stage
class and one row in :data:`ranksam_ros.train.stages.STAGES`.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torchvision.models.convnext import CNBlock

from ranksam_ros.checkpoint import load_state_strict
from ranksam_ros.data.folder import SegmentationFolder
from ranksam_ros.train.config import TrainConfig


class TrainingStage(ABC):
    """One kind of training run.

    Args:
        cfg: The run's config.
        folder: Training frames (held-out sequences already removed).

    Attributes:
        model: The model with exactly the parameters that train left trainable.
        loss: ``loss(samples) -> (scalar, stats)``, the module DDP wraps.
    """

    output_file = "model.safetensors"

    def __init__(self, cfg: TrainConfig, folder: SegmentationFolder) -> None:
        self.cfg = cfg
        self.folder = folder
        self.model = self.build_model()
        settle_frozen_parts(self.model)
        self.loss = self.build_loss()
        if not any(p.requires_grad for p in self.model.parameters()):
            raise ValueError(f"stage {cfg.stage} of {cfg.model} leaves nothing to train")

    @abstractmethod
    def build_model(self) -> nn.Module:
        """The model, with the parameters this stage trains unfrozen and the rest frozen."""

    @abstractmethod
    def build_loss(self) -> nn.Module:
        """The differentiable step: ``module(samples) -> (loss, stats)``."""

    @abstractmethod
    def make_sample(self, index: int, rng: np.random.Generator) -> Any:
        """One training sample of frame ``index``."""

    @abstractmethod
    def trained_module(self) -> nn.Module:
        """The module whose weights this stage changes."""

    @abstractmethod
    def save(self, out_dir: Path, info: dict) -> Path:
        """Write the stage's result into ``out_dir``; its path."""

    def trainable_state(self) -> dict[str, torch.Tensor]:
        """What a checkpoint keeps to resume (the trained module's weights)."""
        return self.trained_module().state_dict()

    def load_trainable_state(self, state: dict[str, torch.Tensor], source: str) -> None:
        """Restore :meth:`trainable_state`; every key must match (strict)."""
        load_state_strict(self.trained_module(), state, source)

    def param_groups(self) -> list[dict]:
        """Optimiser groups ``{"params", "lr", "base_lr"}`` of the trainable parameters."""
        params = [p for p in self.model.parameters() if p.requires_grad]
        lr = self.cfg.optim.lr
        return [{"params": params, "lr": lr, "base_lr": lr}]

    def check_no_freeze(self) -> None:
        """Stages other than foundation decide themselves what trains."""
        if self.cfg.freeze:
            raise ValueError(f"freeze applies to stage=foundation, not stage={self.cfg.stage}")


def settle_frozen_parts(model: nn.Module) -> None:
    """Frozen parts behave as at inference while the rest trains.

    BatchNorm layers with frozen weights keep their running statistics (in training mode
    they would normalise with batch statistics and overwrite the foundation's), and the
    stochastic depth of frozen ConvNeXt blocks is off (it would drop frozen residual branches
    at random under the adapters being trained).
    """
    for module in model.modules():
        if isinstance(module, nn.modules.batchnorm._BatchNorm):
            if not any(p.requires_grad for p in module.parameters(recurse=False)):
                module.eval()
        elif isinstance(module, CNBlock) and not module.block[0].weight.requires_grad:
            module.stochastic_depth.eval()
