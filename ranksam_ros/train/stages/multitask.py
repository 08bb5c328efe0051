"""Multi-task stage: multi-task encoder adapters and prompt-free task heads, foundation frozen.

Every frame is one sample with the targets of all tasks (semantic classes, semantic
boundaries, thing-instance centres and offsets, all from the label map). The loss is the sum
of the task losses plus the Tucker factors' orthogonality penalty; with ``adapter.sharing``
the same stage trains TA-LoRA (``tucker``), LoRA-STL (``separate``) and LoRA-HPS (``shared``).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ranksam_ros.adapters.tensor_lora import TensorLoraConfig, orthogonality_penalty
from ranksam_ros.data.task_targets import IGNORE, boundary_target, centre_targets, thing_instances
from ranksam_ros.graph.preprocess import normalize_pad
from ranksam_ros.modeling.multitask import MultiTaskSam
from ranksam_ros.modeling.registry import build_model
from ranksam_ros.modeling.task_io import save_multitask
from ranksam_ros.train.losses import centernet_focal
from ranksam_ros.train.samples import IGNORE_INDEX, class_weights, prepare_frame, semantic_target
from ranksam_ros.train.stages.base import TrainingStage

BOUNDARY_POS_WEIGHT = 10.0  # boundary pixels are about a tenth of the frame
OFFSET_WEIGHT = 0.1  # offsets are in mask-grid cells: a few cells of error ~ one focal unit


@dataclass
class TaskSample:
    """One frame for the task heads (input pixels ``S``, mask grid ``m``).

    Attributes:
        image: ``(3, S, S)``; semantic: ``(S, S)`` int64; boundary: ``(S, S)`` float
            (-1 ignored); heatmap: ``(m, m)``; offsets: ``(2, m, m)``; offset_mask: ``(m, m)``.
    """

    image: torch.Tensor
    semantic: torch.Tensor
    boundary: torch.Tensor
    heatmap: torch.Tensor
    offsets: torch.Tensor
    offset_mask: torch.Tensor


class MultiTaskLoss(nn.Module):
    """Sum of the task losses of :class:`MultiTaskSam` on a batch of :class:`TaskSample`."""

    def __init__(self, model: MultiTaskSam, weights: torch.Tensor, orthogonality: float) -> None:
        super().__init__()
        self.model = model
        self.orthogonality = orthogonality
        self.register_buffer("class_weights", weights, persistent=False)

    def forward(self, samples: list[TaskSample]) -> tuple[torch.Tensor, dict[str, float]]:
        images = torch.stack([s.image for s in samples])
        outputs = self.model(images)
        size = images.shape[-2:]
        losses = {}
        if "semantic" in outputs:
            logits = F.interpolate(outputs["semantic"], size, mode="bilinear", align_corners=False)
            target = torch.stack([s.semantic for s in samples])
            losses["semantic"] = F.cross_entropy(
                logits, target, weight=self.class_weights, ignore_index=IGNORE_INDEX
            )
        if "boundary" in outputs:
            logits = F.interpolate(outputs["boundary"], size, mode="bilinear", align_corners=False)
            target = torch.stack([s.boundary for s in samples])[:, None]
            valid = target != IGNORE
            pos_weight = torch.tensor(BOUNDARY_POS_WEIGHT)
            losses["boundary"] = F.binary_cross_entropy_with_logits(
                logits[valid], target[valid], pos_weight=pos_weight
            )
        if "centre" in outputs:
            out = outputs["centre"]
            heat = centernet_focal(out[:, 0], torch.stack([s.heatmap for s in samples]))
            mask = torch.stack([s.offset_mask for s in samples])[:, None].expand(-1, 2, -1, -1)
            offsets = torch.stack([s.offsets for s in samples])
            offset = F.l1_loss(out[:, 1:][mask], offsets[mask]) if mask.any() else out.sum() * 0
            losses["centre"] = heat + OFFSET_WEIGHT * offset
        total = torch.stack(list(losses.values())).sum()
        stats = {f"{task}_loss": float(v.detach()) for task, v in losses.items()}
        penalty = orthogonality_penalty(self.model.base.sam.image_encoder)
        if penalty is not None and self.orthogonality > 0:
            total = total + self.orthogonality * penalty
            stats["orthogonality"] = float(penalty.detach())
        return total, stats


class MultiTaskStage(TrainingStage):
    """Train the multi-task adapter set (adapters + heads) on a frozen conv foundation."""

    output_file = "multitask.safetensors"

    def build_model(self) -> MultiTaskSam:
        self.check_no_freeze()
        if not isinstance(self.cfg.adapter, TensorLoraConfig):
            raise ValueError("stage=multitask needs adapter.kind=tensor_lora")
        base = build_model(self.cfg.model)
        return MultiTaskSam(base, self.cfg.adapter, tuple(self.cfg.data.class_names)).train()

    def build_loss(self) -> nn.Module:
        balance = self.cfg.loss.semantic_class_balance
        weights = class_weights(self.folder, self.cfg.data, balance)
        return MultiTaskLoss(self.model, weights, self.cfg.adapter.orthogonality_weight)

    def make_sample(self, index: int, rng: np.random.Generator) -> TaskSample:
        data, arch = self.cfg.data, self.model.base.arch
        frame = prepare_frame(self.folder, index, arch, data, rng)
        size, grid = arch.img_size, arch.mask_size
        label = np.full((size, size), data.ignore_label, np.uint8)
        label[: frame.label.shape[0], : frame.label.shape[1]] = frame.label
        things = tuple(data.class_names.index(name) for name in data.thing_classes)
        instances, _ = thing_instances(label, things, frame.min_area)
        heatmap, offsets, mask = centre_targets(instances, (grid, grid), size / grid)
        return TaskSample(
            image=torch.from_numpy(
                normalize_pad(frame.resized, size, arch.pixel_mean, arch.pixel_std)
            ),
            semantic=torch.from_numpy(semantic_target(frame.label, size, data)),
            boundary=torch.from_numpy(boundary_target(label, data.num_classes)),
            heatmap=torch.from_numpy(heatmap),
            offsets=torch.from_numpy(offsets),
            offset_mask=torch.from_numpy(mask),
        )

    def trained_module(self) -> nn.Module:
        return self.model

    def trainable_state(self) -> dict[str, torch.Tensor]:
        names = {n for n, p in self.model.named_parameters() if p.requires_grad}
        return {k: v for k, v in self.model.state_dict().items() if k in names}

    def load_trainable_state(self, state: dict[str, torch.Tensor], source: str) -> None:
        expected = self.trainable_state()
        if set(state) != set(expected):
            missing, extra = sorted(set(expected) - set(state)), sorted(set(state) - set(expected))
            raise ValueError(f"{source}: missing {missing[:3]}, unexpected {extra[:3]}")
        self.model.load_state_dict(state, strict=False)  # exactly the trainable keys: checked

    def save(self, out_dir: Path, info: dict) -> Path:
        path = out_dir / self.output_file
        save_multitask(path, self.model, self.cfg.model, info)
        return path
