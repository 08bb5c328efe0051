"""Plain LoRA: a fixed-rank update ``s * B A`` (the baseline RankSAM is compared against)."""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn

from ranksam_ros.adapters.base import AdapterConfigBase, AdapterLayer, MergeSelection, check


@dataclass(frozen=True)
class LoraConfig(AdapterConfigBase):
    """LoRA of rank ``rank`` on the targeted linears."""

    kind: str = "lora"
    rank: int = 8

    def __post_init__(self) -> None:
        super().__post_init__()
        check(self.kind == "lora", f"LoraConfig has kind 'lora', got {self.kind!r}")
        check(self.rank >= 1, f"adapter.rank must be >= 1, got {self.rank}")


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

    @classmethod
    def from_config(cls, base: nn.Linear, cfg: LoraConfig) -> LoraLinear:
        return cls(base, cfg.rank, cfg.alpha)

    def delta(self, x: torch.Tensor) -> torch.Tensor:
        return (x @ self.lora_A.t()) @ self.lora_B.t() * self.scale

    def delta_weight(self, selection: MergeSelection | None = None) -> torch.Tensor:
        """``s B A`` (the update is static: ``selection`` is not needed)."""
        return (self.lora_B @ self.lora_A) * self.scale
