"""RankSAM / GaRA gated-rank adapters: per-image gates switch rank-1 components on and off.

``y = W x + s * B (g ⊙ (A x))`` where ``A (R, in)`` and ``B (out, R)`` stack a low-rank space
(``R_lo`` components) and a high-rank space (``R_hi``), and ``g ∈ {0,1}^R`` is computed once per
image by the block's :class:`BlockGate`: a coarse gate per space times a fine gate per component.
Gates are hard in every forward pass; training uses a Gumbel-sigmoid with a straight-through
gradient, evaluation thresholds the logits at 0. Because ``g`` depends on the image the update
cannot be folded into ``W`` unless the gates are fixed.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from ranksam_ros.adapters.base import AdapterConfigBase, AdapterLayer, MergeSelection, check

HIERARCHIES = ("independent", "nested", "flat")


@dataclass(frozen=True)
class GatedRankConfig(AdapterConfigBase):
    """RankSAM / GaRA gated rank-1 components.

    ``rank_low`` / ``rank_high``: components of the low- and high-rank spaces;
    ``hierarchy``: ``independent`` (a coarse gate per space), ``nested`` (the high space
    only with the low one) or ``flat`` (one space of ``rank_low + rank_high``, fine gates
    only); ``gate_hidden``: width of each block's gate MLP; ``tau``: Gumbel-sigmoid
    temperature; ``gate_bias_init``: initial gate logit (positive starts open).
    """

    kind: str = "gated_rank"
    rank_low: int = 4
    rank_high: int = 16
    gate_hidden: int = 64
    hierarchy: str = "independent"
    tau: float = 1.0
    gate_bias_init: float = 2.0

    def __post_init__(self) -> None:
        super().__post_init__()
        check(
            self.kind == "gated_rank", f"GatedRankConfig has kind 'gated_rank', got {self.kind!r}"
        )
        check(
            self.hierarchy in HIERARCHIES,
            f"adapter.hierarchy={self.hierarchy!r} is not one of {', '.join(HIERARCHIES)}",
        )
        check(self.rank_low >= 1, f"adapter.rank_low must be >= 1, got {self.rank_low}")
        check(self.rank_high >= 0, "adapter.rank_high must be >= 0")
        check(self.tau > 0, f"adapter.tau must be > 0, got {self.tau}")


class _StraightThrough(torch.autograd.Function):
    """Forward: exact 0/1 threshold at 0.5; backward: identity (straight-through)."""

    @staticmethod
    def forward(ctx, soft: torch.Tensor) -> torch.Tensor:  # noqa: D102
        return (soft > 0.5).to(soft.dtype)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:  # noqa: D102
        return grad


def gumbel_sigmoid_hard(logits: torch.Tensor, tau: float, training: bool) -> torch.Tensor:
    """Binary gates ``(..., n)`` from logits; straight-through Gumbel-sigmoid while training."""
    if not training:
        return (logits > 0).to(logits.dtype)
    uniform = torch.rand_like(logits).clamp_(1e-6, 1 - 1e-6)
    uniform2 = torch.rand_like(logits).clamp_(1e-6, 1 - 1e-6)
    noise = torch.log(-torch.log(uniform2)) - torch.log(-torch.log(uniform))  # G1 - G2
    return _StraightThrough.apply(torch.sigmoid((logits + noise) / tau))


class GatedRankLinear(AdapterLayer):
    """A frozen linear with ``rank_low + rank_high`` gated rank-1 components.

    Args:
        base: The frozen linear layer.
        rank_low: Components of the low-rank space.
        rank_high: Components of the high-rank space (0 for a single space).
        alpha: Scale numerator; ``s = alpha / R`` or 1 when 0.
    """

    prefix = "gated_"

    def __init__(self, base: nn.Linear, rank_low: int, rank_high: int, alpha: float = 0.0) -> None:
        super().__init__(base)
        self.rank_low = rank_low
        self.rank_high = rank_high
        total = rank_low + rank_high
        self.scale = alpha / total if alpha > 0 else 1.0
        self.gated_A = nn.Parameter(torch.empty(total, base.in_features))
        self.gated_B = nn.Parameter(torch.zeros(base.out_features, total))
        nn.init.kaiming_uniform_(self.gated_A, a=math.sqrt(5))
        self.gates: torch.Tensor | None = None
        self.fixed_gates: torch.Tensor | None = None
        self.fold_single_image = True

    @classmethod
    def from_config(cls, base: nn.Linear, cfg: GatedRankConfig) -> GatedRankLinear:
        if cfg.hierarchy == "flat":  # one space: all components under fine gates only
            return cls(base, cfg.rank_low + cfg.rank_high, 0, cfg.alpha)
        return cls(base, cfg.rank_low, cfg.rank_high, cfg.alpha)

    @property
    def rank(self) -> int:
        return self.rank_low + self.rank_high

    def set_gates(self, gates: torch.Tensor) -> None:
        """Per-image component gates ``(B, R)`` for the next forward pass."""
        self.gates = gates

    def active_rank(self) -> torch.Tensor:
        """Number of components switched on per image in the last pass, ``(B,)``."""
        gates = self._current_gates(None)
        return gates.detach().sum(-1)

    def _current_gates(self, x: torch.Tensor | None) -> torch.Tensor:
        if self.fixed_gates is not None:
            return self.fixed_gates.view(1, -1)
        if self.gates is None:
            raise RuntimeError("GatedRankLinear has no gates: run it inside its encoder block")
        return self.gates

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(..., in) -> (..., out)``.

        For a single image the open components are folded into the weight first
        (``W + s B diag(g) A``, an ``out x R x in`` product): one matmul over the tokens
        instead of three plus a full-size add, which keeps the exported fp32 graph's overhead
        over the frozen encoder small. Batches, and graphs exported for int8 (see
        :func:`per_token_form`), use the per-token low-rank path.
        """
        if self.enabled and not self.merged and self.fold_single_image:
            gates = self._current_gates(x)
            if gates.shape[0] == 1:
                weight = self.base.weight + self.delta_weight(MergeSelection(gates[0]))
                return F.linear(x, weight, self.base.bias)
        return super().forward(x)

    def delta(self, x: torch.Tensor) -> torch.Tensor:
        gates = self._current_gates(x)
        batch = gates.shape[0]
        if batch > 1 and x.shape[0] != batch:
            # Windowed blocks feed (B * windows, h, w, C); windows of one image are contiguous.
            gates = gates.repeat_interleave(x.shape[0] // batch, dim=0)
        gates = gates.view(gates.shape[0], *([1] * (x.dim() - 2)), gates.shape[-1])
        return ((x @ self.gated_A.t()) * gates) @ self.gated_B.t() * self.scale

    def delta_weight(self, selection: MergeSelection | None = None) -> torch.Tensor:
        """``s B diag(g) A`` for the gate pattern of ``selection`` (or ``self.fixed_gates``)."""
        gates = selection.fixed_gates if selection is not None else None
        gates = gates if gates is not None else self.fixed_gates
        if gates is None:
            raise RuntimeError(
                "gated-rank adapters depend on the image and cannot be merged; "
                "pass MergeSelection(fixed_gates=(R,)) to merge a fixed gate pattern"
            )
        gates = gates.reshape(-1).to(self.gated_A.dtype)
        if gates.numel() != self.rank:
            raise ValueError(f"fixed_gates needs {self.rank} values, got {gates.numel()}")
        return (self.gated_B * gates) @ self.gated_A * self.scale


@contextmanager
def per_token_form(module: nn.Module) -> Iterator[int]:
    """Run ``module``'s gated layers in the per-token form (``W x + s B (g ⊙ A x)``) inside.

    Folding the gates into ``W`` makes the weight of every adapted matmul depend on the image,
    so a dynamic int8 quantiser cannot touch those matmuls (they stay fp32 ``Gemm``); the
    per-token form keeps ``W`` constant and quantisable and adds two rank-R matmuls. Yields
    the number of gated layers switched (0: nothing to do).
    """
    layers = [m for m in module.modules() if isinstance(m, GatedRankLinear)]
    before = [layer.fold_single_image for layer in layers]
    for layer in layers:
        layer.fold_single_image = False
    try:
        yield len(layers)
    finally:
        for layer, fold in zip(layers, before):
            layer.fold_single_image = fold


class BlockGate(nn.Module):
    """Gate network of one encoder block: pooled block input -> gates of every adapted linear.

    Args:
        dim: Token width of the block.
        hidden: Hidden width of the two-layer MLP.
        layers: The block's gated linears, in a fixed order.
        hierarchy: ``independent`` (coarse gates per space), ``nested`` (high space needs
            the low one) or ``flat`` (fine gates only).
        tau: Gumbel-sigmoid temperature.
        bias_init: Initial logit of every gate; positive starts with the gates open.
    """

    def __init__(
        self,
        dim: int,
        hidden: int,
        layers: list[GatedRankLinear],
        hierarchy: str = "independent",
        tau: float = 1.0,
        bias_init: float = 2.0,
    ) -> None:
        super().__init__()
        self.layers = layers  # plain list: the layers are registered in the block already
        self.hierarchy = hierarchy
        self.tau = tau
        self.coarse = 0 if hierarchy == "flat" else 2
        n_logits = sum(self.coarse + layer.rank for layer in layers)
        self.gated_fc1 = nn.Linear(dim, hidden)
        self.gated_fc2 = nn.Linear(hidden, n_logits)
        nn.init.zeros_(self.gated_fc2.weight)
        nn.init.constant_(self.gated_fc2.bias, bias_init)
        self.last_gates: list[torch.Tensor] = []

    def forward(self, tokens: torch.Tensor) -> list[torch.Tensor]:
        """Compute and hand out gates.

        Args:
            tokens: Normalised block input ``(B, H, W, C)`` before window partitioning.

        Returns:
            One ``(B, R_layer)`` gate tensor per gated layer (also set on the layers).
        """
        pooled = tokens.mean(dim=(1, 2))
        logits = self.gated_fc2(nn.functional.gelu(self.gated_fc1(pooled)))
        binary = gumbel_sigmoid_hard(logits, self.tau, self.training)
        gates, start = [], 0
        for layer in self.layers:
            chunk = binary[:, start : start + self.coarse + layer.rank]
            start += self.coarse + layer.rank
            gate = self._combine(chunk, layer)
            layer.set_gates(gate)
            gates.append(gate)
        self.last_gates = gates
        return gates

    def _combine(self, chunk: torch.Tensor, layer: GatedRankLinear) -> torch.Tensor:
        if self.coarse == 0:
            return chunk
        coarse_lo, coarse_hi, fine = chunk[:, 0:1], chunk[:, 1:2], chunk[:, 2:]
        if self.hierarchy == "nested":
            coarse_hi = coarse_hi * coarse_lo
        lo = fine[:, : layer.rank_low] * coarse_lo
        hi = fine[:, layer.rank_low :] * coarse_hi
        return torch.cat([lo, hi], dim=1)

    def hook(self, module: nn.Module, inputs: tuple, output: torch.Tensor) -> None:
        """Forward hook on the block's ``norm1``: its output is the per-image gate input."""
        self(output)


def block_gate(
    gate_input: nn.Module, layers: list[GatedRankLinear], cfg: GatedRankConfig
) -> BlockGate:
    """The gate network of one block, sized by its gate-input LayerNorm."""
    return BlockGate(
        gate_input.normalized_shape[0],
        cfg.gate_hidden,
        layers,
        cfg.hierarchy,
        cfg.tau,
        cfg.gate_bias_init,
    )
