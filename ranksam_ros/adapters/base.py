"""The contract every adapter layer follows: wrap a frozen ``nn.Linear``, add a low-rank delta.

Layers wrap (never subclass) the base layer, so the base weights keep their identity and can be
restored exactly. Parameters owned by an adapter start with the adapter type's ``prefix``;
freezing, saving and merging filter on it.
"""

from __future__ import annotations

import torch
from torch import nn


class AdapterLayer(nn.Module):
    """A frozen ``base`` linear plus an adapter-specific delta ``delta(x)``.

    Subclasses set ``prefix`` and implement :meth:`delta` (always) and :meth:`delta_weight`
    (only if the update is static and can be folded into the base weight).
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

    def delta_weight(self, **kwargs: torch.Tensor) -> torch.Tensor:
        """Static update ``(out, in)`` to fold into the base weight; not every adapter has one."""
        raise RuntimeError(f"{type(self).__name__} is not mergeable")

    def merge(self, **kwargs: torch.Tensor) -> None:
        """Fold the delta into the base weight (reversible with :meth:`unmerge`)."""
        if self.merged:
            return
        delta = self.delta_weight(**kwargs).to(self.base.weight.dtype)
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
