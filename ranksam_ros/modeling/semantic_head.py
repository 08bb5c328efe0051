"""Dense semantic head on the convolutional encoder: class logits on the mask grid in one pass.

It reads the embedding (context, stride 16) and the encoder's fine features (stride 4), so it
costs one small convolution stack per frame instead of one SAM decode per segment. During
foundation training its cross-entropy is an auxiliary loss that gives the embedding class
structure; at run time it gives the dense class map.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class SemanticHead(nn.Module):
    """Embedding ``(B, C, g, g)`` + fine features ``(B, C', m, m)`` -> logits ``(B, K, m, m)``.

    Args:
        embed_dim: Channels of the embedding.
        fine_dim: Channels of the fine features.
        num_classes: Output channels ``K``.
        hidden: Width of the head.
    """

    def __init__(self, embed_dim: int, fine_dim: int, num_classes: int, hidden: int = 64) -> None:
        super().__init__()
        self.context = nn.Sequential(
            nn.Conv2d(embed_dim, hidden, 3, padding=1, bias=False),
            nn.BatchNorm2d(hidden),
            nn.GELU(),
        )
        self.mix = nn.Sequential(
            nn.Conv2d(hidden + fine_dim, hidden, 1, bias=False),
            nn.BatchNorm2d(hidden),
            nn.GELU(),
            nn.Conv2d(hidden, num_classes, 1),
        )

    def forward(self, embedding: torch.Tensor, fine: torch.Tensor) -> torch.Tensor:
        context = F.interpolate(
            self.context(embedding), size=fine.shape[-2:], mode="bilinear", align_corners=False
        )
        return self.mix(torch.cat([context, fine], dim=1))
