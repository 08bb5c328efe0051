"""Plain LoRA: a fixed-rank update ``s * B A`` (the baseline RankSAM is compared against)."""

from __future__ import annotations

import math

import torch
from torch import nn

from ranksam_ros.adapters.base import AdapterLayer


class LoraLinear(AdapterLayer):
    """``y = W x + s * B (A x)`` with ``A (r, in)`` Kaiming-uniform and ``B (out, r)`` zero.

    Args:
        base: The frozen linear layer to wrap.
        rank: ``r``.
        alpha: Scale numerator; ``s = alpha / r``, or ``s = 1`` when ``alpha`` is 0.
    """

    prefix = "lora_"

    def __init__(self, base: nn.Linear, rank: int, alpha: float = 0.0) -> None:
        super().__init__(base)
        self.rank = rank
        self.scale = alpha / rank if alpha > 0 else 1.0
        self.lora_A = nn.Parameter(torch.empty(rank, base.in_features))
        self.lora_B = nn.Parameter(torch.zeros(base.out_features, rank))
        nn.init.kaiming_uniform_(self.lora_A, a=math.sqrt(5))

    def delta(self, x: torch.Tensor) -> torch.Tensor:
        return (x @ self.lora_A.t()) @ self.lora_B.t() * self.scale

    def delta_weight(self) -> torch.Tensor:
        return (self.lora_B @ self.lora_A) * self.scale
