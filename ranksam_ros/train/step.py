"""The differentiable part of one training step, as a module so DDP can wrap it."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ranksam_ros.modeling.ranksam import RankSam
from ranksam_ros.train.config import LossConfig
from ranksam_ros.train.losses import (
    importance_coords,
    mask_losses,
    prompt_adapter_losses,
    sample_logits,
    sample_targets,
)
from ranksam_ros.train.samples import IGNORE_INDEX, Sample


class PromptedLoss(nn.Module):
    """Encode a batch of frames, decode every sampled prompt, return the mean mask loss.

    Box prompts use SAM's single-mask output; point prompts use the three ambiguity masks and
    train the best one. With ``loss.point_samples`` the loss is computed on bilinearly sampled
    logits at input-pixel points (mostly uncertain ones), so boundaries are learned below the
    mask-grid size; otherwise on the mask grid against area-downsampled targets.
    """

    def __init__(
        self, model: RankSam, loss: LossConfig, class_weights: torch.Tensor | None = None
    ) -> None:
        super().__init__()
        self.model = model
        self.loss = loss
        self.register_buffer("class_weights", class_weights, persistent=False)

    def _prompt_loss(
        self, logits: torch.Tensor, iou: torch.Tensor, masks: torch.Tensor, hw: tuple[int, int]
    ) -> tuple[torch.Tensor, torch.Tensor]:
        size = masks.shape[-1]
        cfg = self.loss
        if cfg.point_samples > 0:
            coords = importance_coords(logits, masks, hw, cfg.point_samples)
            logits_at, target = sample_logits(logits, coords, size), sample_targets(masks, coords)
            uniform = torch.rand(logits.shape[0], cfg.iou_samples, 2) * torch.tensor(hw[::-1])
            iou_logits = sample_logits(logits.detach(), uniform, size)
            iou_target = sample_targets(masks, uniform)
        else:
            grid = logits.shape[-1]
            target = (F.interpolate(masks[:, None], (grid, grid), mode="area") > 0.5).float()
            crop = (round(hw[0] * grid / size), round(hw[1] * grid / size))
            logits_at = logits[..., : crop[0], : crop[1]].flatten(2)
            target = target[..., : crop[0], : crop[1]].flatten(2)
            iou_logits, iou_target = logits_at.detach(), target
        loss, hit = mask_losses(
            logits_at,
            iou,
            target,
            cfg.focal_weight,
            cfg.bce_weight,
            cfg.dice_weight,
            cfg.iou_weight,
            iou_logits=iou_logits,
            iou_target=iou_target,
        )
        adapter = self.model.prompt_adapter
        if adapter is not None and cfg.prompt_adapter_weight > 0:
            loss = loss + cfg.prompt_adapter_weight * prompt_adapter_losses(adapter.maps, masks)
        return loss, hit

    def forward(self, samples: list[Sample]) -> tuple[torch.Tensor, dict[str, float]]:
        images = torch.stack([s.image for s in samples])
        embeddings, details = self.model.encode_with_detail(images)
        total, count, ious = images.new_zeros(()), 0, []
        for i, sample in enumerate(samples):
            emb = embeddings[i : i + 1]
            detail = details[i : i + 1] if details is not None else None
            if len(sample.boxes):
                logits, iou = self.model.decode(
                    emb, boxes=sample.boxes, multimask=False, detail=detail
                )
                loss, hit = self._prompt_loss(logits, iou, sample.box_masks, sample.valid_hw)
                total, count = total + loss, count + len(sample.boxes)
                ious.append(hit)
            if len(sample.points):
                logits, iou = self.model.decode(
                    emb,
                    points=sample.points,
                    labels=sample.point_labels,
                    multimask=True,
                    detail=detail,
                )
                loss, hit = self._prompt_loss(logits, iou, sample.point_masks, sample.valid_hw)
                total, count = total + loss, count + len(sample.points)
                ious.append(hit)
        loss = total / max(count, 1)
        stats = {"mask_loss": float(loss.detach()), "prompts": float(count)}
        if ious:
            stats["train_iou"] = float(torch.cat(ious).mean())
        if self.loss.semantic_weight > 0 and self.model.semantic_head is not None:
            semantic = self._semantic_loss(embeddings, details, samples)
            loss = loss + self.loss.semantic_weight * semantic
            stats["semantic_loss"] = float(semantic.detach())
        ranks = self.model.active_ranks()
        if ranks and self.loss.rank_budget_weight > 0:
            budget = self._gate_budget()
            loss = loss + self.loss.rank_budget_weight * budget
            stats["gate_open"] = float(budget.detach())
        if ranks:
            stats["active_rank"] = float(torch.stack(list(ranks.values())).float().mean())
        return loss, stats

    def _semantic_loss(
        self, embeddings: torch.Tensor, details: torch.Tensor, samples: list[Sample]
    ) -> torch.Tensor:
        """Weighted cross-entropy of the semantic head at input resolution."""
        logits = self.model.semantic_logits(embeddings, details)
        target = torch.stack([s.semantic for s in samples])
        logits = F.interpolate(logits, target.shape[-2:], mode="bilinear", align_corners=False)
        return F.cross_entropy(logits, target, weight=self.class_weights, ignore_index=IGNORE_INDEX)

    def _gate_budget(self) -> torch.Tensor:
        """Mean (straight-through, differentiable) gate value over all gated components."""
        from ranksam_ros.adapters.gated_rank import GatedRankLinear
        from ranksam_ros.adapters.inject import adapter_layers

        gates = [
            layer.gates.mean()
            for _, layer in adapter_layers(self.model.sam.image_encoder)
            if isinstance(layer, GatedRankLinear) and layer.gates is not None
        ]
        return torch.stack(gates).mean()
