"""Adapter stage: only the encoder adapters train, on degraded frames; SAM stays frozen."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch import nn

from ranksam_ros.adapters.inject import (
    adapter_state_dict,
    inject_adapters,
    mark_only_adapters_trainable,
)
from ranksam_ros.adapters.io import save_adapters
from ranksam_ros.adapters.registry import kind_of
from ranksam_ros.modeling.ranksam import RankSam
from ranksam_ros.modeling.registry import build_model
from ranksam_ros.train.samples import Sample, make_sample
from ranksam_ros.train.stages.base import TrainingStage
from ranksam_ros.train.step import PromptedLoss

GATE_PARAMS = "gated_gate"  # gate networks train at their own rate (optim.gate_lr)


class AdapterStage(TrainingStage):
    """Prompted mask loss through the adapted encoder (+ the gates' rank budget)."""

    output_file = "adapter.safetensors"

    def build_model(self) -> RankSam:
        self.check_no_freeze()
        if self.cfg.adapter is None:
            raise ValueError("stage=adapter needs an adapter section (adapter.kind ...)")
        model = build_model(self.cfg.model)
        inject_adapters(model.sam.image_encoder, self.cfg.adapter)
        model.adapter_cfg = self.cfg.adapter
        mark_only_adapters_trainable(model)
        return model.train()

    def build_loss(self) -> nn.Module:
        return PromptedLoss(self.model, self.cfg.loss)

    def make_sample(self, index: int, rng: np.random.Generator) -> Sample:
        return make_sample(self.folder, index, self.model.arch, self.cfg.data, rng)

    def trained_module(self) -> nn.Module:
        return self.model.sam.image_encoder

    def trainable_state(self) -> dict[str, torch.Tensor]:
        return adapter_state_dict(self.trained_module())

    def load_trainable_state(self, state: dict[str, torch.Tensor], source: str) -> None:
        """Every adapter tensor, and nothing else, must be in ``state`` with its shape."""
        expected = self.trainable_state()
        missing, unexpected = sorted(set(expected) - set(state)), sorted(set(state) - set(expected))
        shapes = [k for k in expected if k in state and state[k].shape != expected[k].shape]
        if missing or unexpected or shapes:
            raise ValueError(
                f"{source}: adapter state does not fit (missing {missing[:3]}, unexpected "
                f"{unexpected[:3]}, shape mismatch {shapes[:3]})"
            )
        self.trained_module().load_state_dict(state, strict=False)  # adapter keys: checked

    def param_groups(self) -> list[dict]:
        optim = self.cfg.optim
        gates, others = [], []
        for name, param in self.model.named_parameters():
            if param.requires_grad:
                (gates if GATE_PARAMS in name else others).append(param)
        groups = [{"params": others, "lr": optim.lr, "base_lr": optim.lr}]
        if gates and kind_of(self.cfg.adapter).gated:
            groups.append({"params": gates, "lr": optim.gate_lr, "base_lr": optim.gate_lr})
        return groups

    def save(self, out_dir: Path, info: dict) -> Path:
        path = out_dir / self.output_file
        save_adapters(path, self.model.sam.image_encoder, self.cfg.adapter, info)
        return path
