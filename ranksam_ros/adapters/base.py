"""The contract every adapter follows: a config dataclass and a layer that wraps a frozen linear.

Layers wrap (never subclass) the base layer, so the base weights keep their identity and can be
restored exactly. Parameters owned by an adapter start with the adapter kind's ``prefix``;
freezing, saving and merging filter on it. Each kind has one row in
:data:`ranksam_ros.adapters.registry.ADAPTER_KINDS`.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn


def check(condition: bool, message: str) -> None:
    """Raise ``ValueError(message)`` unless ``condition`` (config validation)."""
    if not condition:
        raise ValueError(message)


@dataclass(frozen=True)
class AdapterConfigBase:
    """Fields every adapter kind shares.

    ``target_modules``: regular expressions matched (fullmatch) against module names inside
    one encoder block, e.g. ``attn.qkv`` (ViT) or ``block.3`` (a ConvNeXt block's first
    linear). ``layers``: encoder block indices to adapt; empty means all blocks.
    ``alpha``: scale numerator, ``s = alpha / rank`` (0 means ``s = 1``).
    """

    kind: str = ""
    target_modules: tuple[str, ...] = ("attn.qkv", "attn.proj")
    layers: tuple[int, ...] = ()
    alpha: float = 0.0

    def __post_init__(self) -> None:
        check(len(self.target_modules) > 0, "adapter.target_modules must not be empty")
        check(self.alpha >= 0, "adapter.alpha must be >= 0 (0 means scale 1)")


@dataclass(frozen=True)
class MergeSelection:
    """What a merge needs to turn an adapter's update into a fixed weight.

    Attributes:
        fixed_gates: Gate pattern ``(R,)`` for input-gated adapters (their update otherwise
            depends on the image).
        task: Task index for multi-task adapters.
    """

    fixed_gates: torch.Tensor | None = None
    task: int | None = None


class AdapterLayer(nn.Module):
    """A frozen ``base`` linear plus an adapter-specific delta ``delta(x)``.

    Subclasses set ``prefix``, build themselves from their config in :meth:`from_config`, and
    implement :meth:`delta` (always) and :meth:`delta_weight` (if the update can be folded
    into the base weight, possibly given a :class:`MergeSelection`).
    """

    prefix = "adapter_"

    def __init__(self, base: nn.Linear) -> None:
        super().__init__()
        if not isinstance(base, nn.Linear):
            raise TypeError(f"adapters wrap nn.Linear, got {type(base).__name__}")
        self.base = base
        self.enabled = True
        self.merged = False
        self._merged_delta: torch.Tensor | None = None

    @classmethod
    def from_config(cls, base: nn.Linear, cfg: AdapterConfigBase) -> AdapterLayer:
        """The layer of config ``cfg`` around ``base``."""
        raise NotImplementedError

    @property
    def in_features(self) -> int:
        return self.base.in_features

    @property
    def out_features(self) -> int:
        return self.base.out_features

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(..., in) -> (..., out)``: base output plus the delta while enabled and unmerged."""
        out = self.base(x)
        if self.enabled and not self.merged:
            out = out + self.delta(x)
        return out

    def delta(self, x: torch.Tensor) -> torch.Tensor:
        """Adapter contribution ``(..., in) -> (..., out)``."""
        raise NotImplementedError

    def delta_weight(self, selection: MergeSelection | None = None) -> torch.Tensor:
        """Static update ``(out, in)`` to fold into the base weight.

        Raises:
            RuntimeError: the update cannot be made static (or ``selection`` lacks what it
                needs, e.g. gates of an input-gated adapter).
        """
        raise RuntimeError(f"{type(self).__name__} is not mergeable")

    def merge(self, selection: MergeSelection | None = None) -> None:
        """Fold the delta into the base weight (reversible with :meth:`unmerge`)."""
        if self.merged:
            return
        delta = self.delta_weight(selection).to(self.base.weight.dtype)
        if not torch.isfinite(delta).all():
            raise ValueError(f"{type(self).__name__}: refusing to merge a non-finite update")
        with torch.no_grad():
            self.base.weight += delta
        self._merged_delta = delta
        self.merged = True

    def unmerge(self) -> None:
        """Subtract exactly what :meth:`merge` added."""
        if not self.merged or self._merged_delta is None:
            return
        with torch.no_grad():
            self.base.weight -= self._merged_delta
        self._merged_delta = None
        self.merged = False
