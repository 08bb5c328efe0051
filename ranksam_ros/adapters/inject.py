"""Put adapters into SAM's image encoder by target-module pattern, and manage them afterwards."""

from __future__ import annotations

import re
from collections.abc import Iterator

import torch
from segment_anything.modeling import ImageEncoderViT
from torch import nn

from ranksam_ros.adapters.base import AdapterLayer
from ranksam_ros.adapters.gated_rank import BlockGate, GatedRankLinear
from ranksam_ros.adapters.lora import LoraLinear
from ranksam_ros.config import AdapterConfig

ADAPTER_PREFIXES = (LoraLinear.prefix, GatedRankLinear.prefix)


def _make_layer(base: nn.Linear, cfg: AdapterConfig) -> AdapterLayer:
    if cfg.kind == "lora":
        return LoraLinear(base, cfg.rank, cfg.alpha)
    rank_low, rank_high = cfg.rank_low, cfg.rank_high
    if cfg.hierarchy == "flat":
        rank_low, rank_high = rank_low + rank_high, 0
    return GatedRankLinear(base, rank_low, rank_high, cfg.alpha)


def _targets(block: nn.Module, patterns: tuple[str, ...]) -> list[str]:
    return [
        name
        for name, module in block.named_modules()
        if isinstance(module, nn.Linear) and any(re.fullmatch(p, name) for p in patterns)
    ]


def _replace(block: nn.Module, name: str, new: nn.Module) -> None:
    parent_name, _, child = name.rpartition(".")
    parent = block.get_submodule(parent_name) if parent_name else block
    setattr(parent, child, new)


def inject_adapters(encoder: ImageEncoderViT, cfg: AdapterConfig) -> list[str]:
    """Wrap the targeted linears of the selected encoder blocks with adapter layers.

    Args:
        encoder: SAM's image encoder (modified in place).
        cfg: Which adapter, which blocks (``layers``; empty = all) and which linears.

    Returns:
        Names (relative to the encoder) of the wrapped linears.

    Raises:
        ValueError: a block index is out of range, a pattern matches nothing, or the encoder
            already holds adapters.
    """
    if any(isinstance(m, AdapterLayer) for m in encoder.modules()):
        raise ValueError("the encoder already has adapters; build a fresh model first")
    depth = len(encoder.blocks)
    layers = cfg.layers or tuple(range(depth))
    bad = [i for i in layers if not 0 <= i < depth]
    if bad:
        raise ValueError(f"adapter.layers {bad} out of range for an encoder of depth {depth}")
    wrapped = []
    for index in layers:
        block = encoder.blocks[index]
        names = _targets(block, cfg.target_modules)
        if not names:
            raise ValueError(
                f"adapter.target_modules {list(cfg.target_modules)} match no linear in block "
                f"{index}; linears there: {_targets(block, ('.*',))}"
            )
        new_layers = []
        for name in names:
            layer = _make_layer(block.get_submodule(name), cfg)
            _replace(block, name, layer)
            new_layers.append(layer)
            wrapped.append(f"blocks.{index}.{name}")
        if cfg.kind == "gated_rank":
            gate = BlockGate(
                encoder.blocks[index].norm1.normalized_shape[0],
                cfg.gate_hidden,
                new_layers,
                cfg.hierarchy,
                cfg.tau,
                cfg.gate_bias_init,
            )
            block.add_module("gated_gate", gate)
            block.norm1.register_forward_hook(gate.hook)
    # New modules start in training mode; follow the encoder (eval -> hard gates, no noise).
    encoder.train(encoder.training)
    return wrapped


def is_adapter_param(name: str) -> bool:
    """True for parameters owned by an adapter (any dotted part starts with a known prefix)."""
    return any(part.startswith(ADAPTER_PREFIXES) for part in name.split("."))


def mark_only_adapters_trainable(model: nn.Module) -> int:
    """Freeze everything except adapter parameters; returns the number of trainable values."""
    count = 0
    for name, param in model.named_parameters():
        param.requires_grad_(is_adapter_param(name))
        count += param.numel() if param.requires_grad else 0
    return count


def adapter_layers(model: nn.Module) -> Iterator[tuple[str, AdapterLayer]]:
    """``(name, layer)`` for every adapter layer inside ``model``."""
    for name, module in model.named_modules():
        if isinstance(module, AdapterLayer):
            yield name, module


def adapter_state_dict(model: nn.Module) -> dict[str, torch.Tensor]:
    """Only the adapter tensors of ``model`` (what an adapter file stores)."""
    return {k: v for k, v in model.state_dict().items() if is_adapter_param(k)}


def set_adapters_enabled(model: nn.Module, enabled: bool) -> None:
    """Switch every adapter's contribution on or off without removing it."""
    for _, layer in adapter_layers(model):
        layer.enabled = enabled


def merge_adapters(model: nn.Module, **kwargs: torch.Tensor) -> None:
    """Fold every mergeable adapter into its base weight (gated ones need fixed gates)."""
    for name, layer in adapter_layers(model):
        try:
            layer.merge(**kwargs)
        except RuntimeError as exc:
            raise RuntimeError(f"cannot merge {name}: {exc}") from exc


def unmerge_adapters(model: nn.Module) -> None:
    """Undo :func:`merge_adapters` exactly."""
    for _, layer in adapter_layers(model):
        layer.unmerge()


def active_ranks(model: nn.Module) -> dict[str, torch.Tensor]:
    """Active rank of each gated layer for each image of the last forward pass, ``{name: (B,)}``."""
    return {
        name: layer.active_rank()
        for name, layer in adapter_layers(model)
        if isinstance(layer, GatedRankLinear) and (layer.gates is not None)
    }
