"""Foundation stage: SAM (encoder, prompt encoder, mask decoder) and its heads, all or some.

With ``freeze`` (e.g. ``[image_encoder]``) it is a fixed-encoder phase: the embeddings, and
so the prompt predictor and the encoder adapters trained on them, stay valid while the
decoder or a head trains. ``init`` starts from one of our checkpoints (a later phase).
"""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

import numpy as np
from torch import nn

from ranksam_ros.modeling.ranksam import RankSam
from ranksam_ros.modeling.registry import build_model, save_model
from ranksam_ros.train.samples import Sample, class_weights, make_sample
from ranksam_ros.train.stages.base import TrainingStage
from ranksam_ros.train.step import PromptedLoss


def matches(name: str, patterns: tuple[str, ...]) -> bool:
    """``name`` fully matches one of the regular expressions."""
    return any(re.fullmatch(pattern, name) for pattern in patterns)


def model_part(name: str) -> str:
    """``sam.image_encoder.x`` -> ``image_encoder``; ``detail_head.x`` -> ``detail_head``."""
    parts = name.split(".")
    return parts[1] if parts[0] == "sam" else parts[0]


class FoundationStage(TrainingStage):
    """Prompted mask loss (+ the semantic head's cross-entropy) on augmented frames."""

    def build_model(self) -> RankSam:
        cfg = self.cfg
        model = build_model(cfg.model)
        if cfg.init:
            start = build_model(cfg.init)
            # A model without the detail head may start one: the new head begins neutral.
            if dataclasses.replace(start.arch, detail_head=model.arch.detail_head) != model.arch:
                raise ValueError(f"init={cfg.init} has another architecture than model={cfg.model}")
            model.sam.load_state_dict(start.sam.state_dict())
            for name, head in start.heads().items():
                if name in model.heads():
                    model.heads()[name].load_state_dict(head.state_dict())
        for name, param in model.named_parameters():
            if cfg.trainable:
                param.requires_grad_(matches(name, cfg.trainable))
            else:
                param.requires_grad_(model_part(name) not in cfg.freeze)
        return model.train()

    def build_loss(self) -> nn.Module:
        weights = None
        if self.cfg.loss.semantic_weight > 0 and self.model.semantic_head is not None:
            weights = class_weights(
                self.folder, self.cfg.data, self.cfg.loss.semantic_class_balance
            )
        return PromptedLoss(self.model, self.cfg.loss, weights)

    def make_sample(self, index: int, rng: np.random.Generator) -> Sample:
        return make_sample(self.folder, index, self.model.arch, self.cfg.data, rng)

    def trained_module(self) -> nn.Module:
        return self.model

    def save(self, out_dir: Path, info: dict) -> Path:
        path = out_dir / self.output_file
        save_model(path, self.model, info)
        return path
