"""The table of adapter kinds: each kind is a config dataclass, a layer class and two flags.

Adding a kind (a tensor LoRA, a decoder prompt adapter ...) means adding its file (config +
layer) and one row here; injection, freezing, saving, loading, merging and export read the
table instead of switching on names.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Union

from torch import nn

from ranksam_ros.adapters.base import AdapterConfigBase
from ranksam_ros.adapters.gated_rank import GatedRankConfig, GatedRankLinear
from ranksam_ros.adapters.lora import LoraConfig, LoraLinear
from ranksam_ros.adapters.prompt_adapter import (
    PromptAdapterBlock,
    PromptAdapterConfig,
    inject_prompt_adapter,
)
from ranksam_ros.adapters.tensor_lora import TensorLoraConfig, TensorLoraLinear
from ranksam_ros.config_loader import from_dict


@dataclass(frozen=True)
class AdapterKind:
    """One row of the table.

    Attributes:
        config: The kind's config dataclass (its ``kind`` field names the row).
        layer: The :class:`AdapterLayer` subclass that wraps each targeted linear.
        gated: Input-gated: a gate network per block computes the update per image.
        mergeable: The update folds into the base weight without extra information.
        target: The part of SAM it adapts: ``image_encoder`` (linears of its blocks) or
            ``mask_decoder`` (the kind's own ``inject`` puts it into the whole ``Sam``).
        inject: How to put it in, when not by wrapping the targeted linears.
    """

    config: type[AdapterConfigBase]
    layer: type[nn.Module]
    gated: bool
    mergeable: bool
    target: str = "image_encoder"
    inject: Callable[[nn.Module, Any], list[str]] | None = None


ADAPTER_KINDS: dict[str, AdapterKind] = {
    "gated_rank": AdapterKind(GatedRankConfig, GatedRankLinear, gated=True, mergeable=False),
    "lora": AdapterKind(LoraConfig, LoraLinear, gated=False, mergeable=True),
    # Mergeable one task at a time (MergeSelection(task=t)).
    "tensor_lora": AdapterKind(TensorLoraConfig, TensorLoraLinear, gated=False, mergeable=False),
    # PA-SAM: inside the mask decoder (a wrapped two-way block and a guiding branch).
    "prompt_adapter": AdapterKind(
        PromptAdapterConfig,
        PromptAdapterBlock,
        gated=False,
        mergeable=False,
        target="mask_decoder",
        inject=inject_prompt_adapter,
    ),
}

# The type of an adapter config anywhere in a config file (TrainConfig.adapter).
AdapterConfig = Union[tuple(kind.config for kind in ADAPTER_KINDS.values())]  # noqa: UP007

ADAPTER_PREFIXES = tuple(kind.layer.prefix for kind in ADAPTER_KINDS.values())


def adapter_target(root: nn.Module, cfg: AdapterConfigBase) -> nn.Module:
    """The module an adapter of ``cfg`` goes into: the encoder, or the whole ``Sam``.

    ``root`` is a ``Sam`` (its part is picked by the kind's target) or already the image
    encoder (encoder kinds only).
    """
    kind = kind_of(cfg)
    if not hasattr(root, "image_encoder"):
        if kind.target != "image_encoder":
            raise ValueError(f"a {cfg.kind} adapter goes into SAM's {kind.target}: pass the Sam")
        return root
    return root.image_encoder if kind.target == "image_encoder" else root


def adapter_kind(name: str) -> AdapterKind:
    """The row of kind ``name``; ``ValueError`` lists the kinds."""
    try:
        return ADAPTER_KINDS[name]
    except KeyError:
        raise ValueError(
            f"adapter.kind={name!r} is not one of {', '.join(ADAPTER_KINDS)}"
        ) from None


def kind_of(cfg: AdapterConfigBase) -> AdapterKind:
    """The row of an adapter config."""
    return adapter_kind(cfg.kind)


def parse_adapter_config(data: dict[str, Any], where: str = "adapter") -> AdapterConfigBase:
    """The config dataclass of ``data['kind']`` built from ``data`` (unknown keys are errors)."""
    if "kind" not in data:
        raise ValueError(f"{where}: needs a kind ({', '.join(ADAPTER_KINDS)})")
    return from_dict(adapter_kind(str(data["kind"])).config, data, where)


def legacy_adapter_config(data: dict[str, Any], where: str) -> AdapterConfigBase:
    """Config of an adapter file written before kinds had their own configs.

    Those files stored every kind's fields in one mapping; the fields that belong to
    another kind are dropped.
    """
    kind = adapter_kind(str(data.get("kind", "")))
    own = {f.name for f in dataclasses.fields(kind.config)}
    return from_dict(kind.config, {k: v for k, v in data.items() if k in own}, where)
