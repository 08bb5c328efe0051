"""SAM's training loss: focal + dice on mask logits, MSE between predicted and actual IoU."""

from __future__ import annotations

from functools import partial

import torch
import torch.nn.functional as F


def focal_loss(logits: torch.Tensor, target: torch.Tensor, alpha: float = 0.25, gamma: float = 2.0):
    """Sigmoid focal loss per mask, mean over pixels.

    Args:
        logits: ``(N, K, P)`` (any trailing pixel layout).
        target: ``(N, 1, P)`` in {0, 1}, broadcast over ``K``.
        alpha: Weight of the positive class.
        gamma: Focusing exponent.

    Returns:
        ``(N, K)``.
    """
    target = target.expand_as(logits)
    prob = torch.sigmoid(logits)
    ce = F.binary_cross_entropy_with_logits(logits, target, reduction="none")
    p_t = prob * target + (1 - prob) * (1 - target)
    loss = ce * (1 - p_t) ** gamma
    loss = (alpha * target + (1 - alpha) * (1 - target)) * loss
    return loss.flatten(2).mean(-1)


def bce_loss(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Per-mask BCE, mean over pixels: ``(N, K, P)``, ``(N, 1, P)`` -> ``(N, K)``."""
    target = target.expand_as(logits)
    return F.binary_cross_entropy_with_logits(logits, target, reduction="none").flatten(2).mean(-1)


def dice_loss(logits: torch.Tensor, target: torch.Tensor, eps: float = 1.0) -> torch.Tensor:
    """Soft dice loss per mask: ``(N, K, H, W)`` vs ``(N, 1, H, W)`` -> ``(N, K)``."""
    prob = torch.sigmoid(logits).flatten(2)
    target = target.expand_as(logits).flatten(2)
    inter = (prob * target).sum(-1)
    return 1 - (2 * inter + eps) / (prob.sum(-1) + target.sum(-1) + eps)


def hard_iou(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """IoU of thresholded masks ``(N, K, H, W)`` vs ``(N, 1, H, W)`` -> ``(N, K)`` (no grad)."""
    with torch.no_grad():
        pred = (logits > 0).flatten(2)
        truth = target.expand_as(logits).flatten(2) > 0.5
        inter = (pred & truth).sum(-1).float()
        union = (pred | truth).sum(-1).float().clamp_min(1.0)
        return inter / union


def mask_losses(
    logits: torch.Tensor,
    iou_pred: torch.Tensor,
    target: torch.Tensor,
    focal_weight: float,
    bce_weight: float,
    dice_weight: float,
    iou_weight: float,
    iou_logits: torch.Tensor,
    iou_target: torch.Tensor,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Loss of the best of ``K`` candidate masks per prompt (SAM's ambiguity-aware rule).

    Args:
        logits: ``(N, K, P)`` at P pixels (sampled points or a flattened grid).
        iou_pred: ``(N, K)``.
        target: ``(N, 1, P)``.
        focal_weight: Weight of the focal term (0 skips it).
        bce_weight: Weight of the BCE term (0 skips it).
        dice_weight: Weight of the dice term.
        iou_weight: Weight of the IoU-prediction MSE.
        iou_logits: ``(N, K, Q)`` logits at unbiased pixels for the IoU target.
        iou_target: ``(N, 1, Q)``.

    Returns:
        Summed loss over prompts (scalar) and the IoU of the chosen masks ``(N,)``.
    """
    per_mask = dice_weight * dice_loss(logits, target)
    if focal_weight:
        per_mask = per_mask + focal_weight * focal_loss(logits, target)
    if bce_weight:
        per_mask = per_mask + bce_weight * bce_loss(logits, target)
    best = per_mask.argmin(dim=1)
    rows = torch.arange(logits.shape[0])
    iou = hard_iou(iou_logits, iou_target)
    iou_term = F.mse_loss(iou_pred, iou, reduction="none").mean(1)
    loss = per_mask[rows, best] + iou_weight * iou_term
    return loss.sum(), iou[rows, best]


def sample_logits(logits: torch.Tensor, coords: torch.Tensor, size: int) -> torch.Tensor:
    """Bilinear logits at input-pixel coordinates.

    Args:
        logits: ``(N, K, m, m)`` covering the padded ``size x size`` input.
        coords: ``(N, P, 2)`` (x, y) in input pixels.
        size: Side of the padded input.

    Returns:
        ``(N, K, P)``; the same values ``F.interpolate`` to ``size`` would give at those pixels.
    """
    grid = ((coords + 0.5) / size * 2.0 - 1.0).unsqueeze(1)  # (N, 1, P, 2)
    return F.grid_sample(logits, grid, mode="bilinear", align_corners=False).squeeze(2)


def sample_targets(masks: torch.Tensor, coords: torch.Tensor) -> torch.Tensor:
    """Ground truth ``(N, S, S)`` at pixel coordinates ``(N, P, 2)`` -> ``(N, 1, P)``."""
    xs = coords[..., 0].long().clamp(0, masks.shape[-1] - 1)
    ys = coords[..., 1].long().clamp(0, masks.shape[-2] - 1)
    rows = torch.arange(masks.shape[0]).unsqueeze(1)
    return masks[rows, ys, xs].unsqueeze(1)


def target_boxes(masks: torch.Tensor) -> torch.Tensor:
    """Tight boxes ``(N, 4)`` (x0, y0, x1, y1, exclusive ends) of masks ``(N, S, S)``."""
    size = masks.shape[-1]
    index = torch.arange(size, dtype=masks.dtype)
    rows, cols = masks.amax(dim=2) > 0, masks.amax(dim=1) > 0
    big = torch.full_like(masks[:, 0], float(size))
    y0 = torch.where(rows, index, big).amin(1)
    x0 = torch.where(cols, index, big).amin(1)
    y1 = torch.where(rows, index + 1, torch.zeros_like(big)).amax(1)
    x1 = torch.where(cols, index + 1, torch.zeros_like(big)).amax(1)
    return torch.stack([x0, y0, x1, y1], dim=1)


def importance_coords(
    logits: torch.Tensor,
    masks: torch.Tensor,
    valid_hw: tuple[int, int],
    count: int,
    oversample: int = 3,
    importance: float = 0.75,
) -> torch.Tensor:
    """Pixel coordinates ``(N, count, 2)`` where the loss is computed.

    Candidates come half from around the target (its box grown by a margin), half from the
    whole frame, so small segments get as many positive points as large ones; of those, most
    are kept where the logits are least certain (PointRend / Mask2Former importance sampling).
    This trains sub-cell boundaries at a small fraction of the cost of upsampling every mask.

    Args:
        logits: ``(N, K, m, m)``.
        masks: Targets ``(N, S, S)`` at input resolution.
        valid_hw: Unpadded ``(h, w)``.
        count: Points per mask.
        oversample: Candidates drawn per kept point.
        importance: Share of points chosen by uncertainty (the rest at random).
    """
    n, size = logits.shape[0], masks.shape[-1]
    frame = torch.tensor([valid_hw[1], valid_hw[0]], dtype=logits.dtype)
    with torch.no_grad():
        boxes = target_boxes(masks)
        margin = (0.25 * (boxes[:, 2:] - boxes[:, :2]).amax(1, keepdim=True) + 8.0).clamp_min(8.0)
        low = (boxes[:, :2] - margin).clamp_min(0.0)
        high = torch.minimum(boxes[:, 2:] + margin, frame)
        local_n = count * oversample // 2
        local = low[:, None] + torch.rand(n, local_n, 2) * (high - low)[:, None]
        spread = torch.rand(n, count * oversample - local_n, 2) * frame
        candidates = torch.cat([local, spread], dim=1)
        uncertainty = -sample_logits(logits.detach(), candidates, size).abs().mean(1)
        top = int(count * importance)
        index = uncertainty.topk(top, dim=1).indices
        picked = torch.gather(candidates, 1, index.unsqueeze(-1).expand(-1, -1, 2))
        rest = torch.randint(0, candidates.shape[1], (n, count - top, 1)).expand(-1, -1, 2)
        extra = torch.gather(candidates, 1, rest)
    return torch.cat([picked, extra], dim=1)


def centernet_focal(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Penalty-reduced focal loss (CenterNet) normalised by the number of peaks."""
    prob = torch.sigmoid(logits).clamp(1e-4, 1 - 1e-4)
    positive = target >= 1.0 - 1e-6
    pos_loss = -((1 - prob) ** 2 * torch.log(prob))[positive].sum()
    neg_loss = -((1 - target) ** 4 * prob**2 * torch.log(1 - prob))[~positive].sum()
    return (pos_loss + neg_loss) / positive.sum().clamp_min(1)


def prompt_adapter_losses(maps: dict[str, torch.Tensor], masks: torch.Tensor) -> torch.Tensor:
    """PA-SAM's auxiliary losses on the token grid, summed over prompts.

    The uncertainty map learns where a cell is part object, part background (the boundary
    band); the refined map is trained where it is uncertain, the coarse map elsewhere.

    Args:
        maps: ``uncertainty``, ``refined``, ``coarse`` logits ``(N, g*g)`` of the adapter.
        masks: Target masks ``(N, S, S)`` on the padded input.
    """
    grid = int(round(maps["uncertainty"].shape[1] ** 0.5))
    share = F.interpolate(masks[:, None], (grid, grid), mode="area").flatten(1)
    band = ((share > 0.05) & (share < 0.95)).float()
    inside = (share > 0.5).float()
    uncertain = torch.sigmoid(maps["uncertainty"].detach()) >= 0.5
    bce = partial(F.binary_cross_entropy_with_logits, reduction="none")
    per_cell = (
        bce(maps["uncertainty"], band)
        + torch.where(uncertain, bce(maps["refined"], inside), torch.zeros_like(band))
        + torch.where(uncertain, torch.zeros_like(band), bce(maps["coarse"], inside))
    )
    return per_cell.mean(dim=1).sum()
