"""Adapter stage: an adapter kind trains on frozen SAM, optionally with named SAM parts.

Encoder adapters train on degraded frames, the decoder's prompt adapter on clean ones.

The result is the adapter file; when ``trainable`` also unfroze SAM parts (PA-SAM retrains the
decoder's upscaling, hypernetworks and mask tokens), those weights go into the same file, so
the set loads onto the unchanged foundation.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch import nn

from ranksam_ros.adapters.inject import (
    inject_adapters,
    is_adapter_param,
    mark_only_adapters_trainable,
)
from ranksam_ros.adapters.io import save_adapters
from ranksam_ros.adapters.registry import adapter_target, kind_of
from ranksam_ros.modeling.ranksam import RankSam
from ranksam_ros.modeling.registry import build_model
from ranksam_ros.train.samples import Sample, make_sample
from ranksam_ros.train.stages.base import TrainingStage
from ranksam_ros.train.stages.foundation import matches
from ranksam_ros.train.step import PromptedLoss

GATE_PARAMS = "gated_gate"  # gate networks train at their own rate (optim.gate_lr)


class AdapterStage(TrainingStage):
    """Prompted mask loss through the adapted model (+ the gates' rank budget)."""

    output_file = "adapter.safetensors"

    def build_model(self) -> RankSam:
        self.check_no_freeze()
        if self.cfg.adapter is None:
            raise ValueError("stage=adapter needs an adapter section (adapter.kind ...)")
        model = build_model(self.cfg.model)
        inject_adapters(adapter_target(model.sam, self.cfg.adapter), self.cfg.adapter)
        model.adapter_cfg = self.cfg.adapter
        mark_only_adapters_trainable(model)
        for name, param in model.named_parameters():
            if matches(name, self.cfg.trainable):
                param.requires_grad_(True)
        return model.train()

    def build_loss(self) -> nn.Module:
        return PromptedLoss(self.model, self.cfg.loss)

    def make_sample(self, index: int, rng: np.random.Generator) -> Sample:
        return make_sample(self.folder, index, self.model.arch, self.cfg.data, rng)

    def trained_module(self) -> nn.Module:
        return self.model

    def trainable_state(self) -> dict[str, torch.Tensor]:
        """The adapter tensors and every other parameter that trains."""
        trained = {n for n, p in self.model.named_parameters() if p.requires_grad}
        return {
            k: v for k, v in self.model.state_dict().items() if k in trained or is_adapter_param(k)
        }

    def load_trainable_state(self, state: dict[str, torch.Tensor], source: str) -> None:
        """Exactly the keys of :meth:`trainable_state`, with their shapes."""
        expected = self.trainable_state()
        missing, unexpected = sorted(set(expected) - set(state)), sorted(set(state) - set(expected))
        shapes = [k for k in expected if k in state and state[k].shape != expected[k].shape]
        if missing or unexpected or shapes:
            raise ValueError(
                f"{source}: trained state does not fit (missing {missing[:3]}, unexpected "
                f"{unexpected[:3]}, shape mismatch {shapes[:3]})"
            )
        self.model.load_state_dict(state, strict=False)  # exactly the trained keys: checked

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
        save_adapters(path, self.model.sam, self.cfg.adapter, info, self._retrained())
        return path

    def _retrained(self) -> dict[str, torch.Tensor]:
        """SAM weights that trained beside the adapter, named within the Sam."""
        trained = {n for n, p in self.model.named_parameters() if p.requires_grad}
        outside = sorted(n for n in trained if not n.startswith("sam.") and not is_adapter_param(n))
        if outside:
            raise ValueError(f"trainable names parts outside SAM: {outside[:3]}")
        return {
            name.removeprefix("sam."): param.detach()
            for name, param in self.model.named_parameters()
            if name in trained and not is_adapter_param(name)
        }
