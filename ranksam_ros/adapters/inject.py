"""Put adapters into an image encoder by target pattern, and take them out again.

An encoder names the blocks adapters may target and each block's gate input: SAM's
``ImageEncoderViT`` its ``blocks`` (gate input ``norm1``, which ``Block.forward`` applies to the
whole ``(B, H, W, C)`` grid before window partitioning, so gates are per image); the
convolutional encoder describes its own (``adapter_blocks()``). Gate hooks are kept, so
adapters can be removed (:func:`remove_adapters`) or folded in (:func:`merge_and_unload`).
"""

from __future__ import annotations

import re
from collections.abc import Iterator

import torch
from torch import nn

from ranksam_ros.adapters.base import AdapterConfigBase, AdapterLayer, MergeSelection
from ranksam_ros.adapters.gated_rank import GatedRankLinear, block_gate
from ranksam_ros.adapters.prompt_adapter import PromptAdapterBlock
from ranksam_ros.adapters.registry import ADAPTER_PREFIXES, kind_of

GATE_MODULE = "gated_gate"  # name of a block's gate network (its parameters carry the prefix)
VIT_GATE_INPUT = "norm1"


def adapter_blocks(encoder: nn.Module) -> list[tuple[str, nn.Module, str]]:
    """``(name, block, gate-input module name)`` of every block adapters may target.

    Raises:
        TypeError: the encoder has no blocks to adapt.
    """
    if hasattr(encoder, "adapter_blocks"):
        return encoder.adapter_blocks()
    blocks = getattr(encoder, "blocks", None)
    if blocks is None:
        raise TypeError(f"{type(encoder).__name__} has no blocks adapters can target")
    return [(f"blocks.{i}", block, VIT_GATE_INPUT) for i, block in enumerate(blocks)]


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


def inject_adapters(encoder: nn.Module, cfg: AdapterConfigBase) -> list[str]:
    """Wrap the targeted linears of the selected encoder blocks with the kind's layers.

    Kinds with their own ``inject`` (the decoder's prompt adapter) get the module
    :func:`~ranksam_ros.adapters.registry.adapter_target` gives them instead.

    Args:
        encoder: An image encoder, or the ``Sam`` for decoder kinds (modified in place).
        cfg: An adapter config (its ``kind`` picks the row of the adapter table).

    Returns:
        Names (relative to the encoder) of the wrapped linears.

    Raises:
        ValueError: a block index is out of range, a pattern matches nothing, or the encoder
            already holds adapters.
    """
    kind = kind_of(cfg)
    if kind.inject is not None:  # adapters that do not wrap linears put themselves in
        return kind.inject(encoder, cfg)
    if any(isinstance(m, AdapterLayer) for m in encoder.modules()):
        raise ValueError("the encoder already has adapters; remove them or build a fresh model")
    blocks = adapter_blocks(encoder)
    chosen = cfg.layers or tuple(range(len(blocks)))
    bad = [i for i in chosen if not 0 <= i < len(blocks)]
    if bad:
        raise ValueError(
            f"adapter.layers {bad} out of range for an encoder of {len(blocks)} blocks"
        )
    wrapped, hooks = [], []
    for index in chosen:
        block_name, block, gate_input = blocks[index]
        names = _targets(block, cfg.target_modules)
        if not names:
            raise ValueError(
                f"adapter.target_modules {list(cfg.target_modules)} match no linear in "
                f"{block_name}; linears there: {_targets(block, ('.*',))}"
            )
        layers = []
        for name in names:
            layer = kind.layer.from_config(block.get_submodule(name), cfg)
            _replace(block, name, layer)
            layers.append(layer)
            wrapped.append(f"{block_name}.{name}")
        if kind.gated:
            gate_module = block.get_submodule(gate_input)
            gate = block_gate(gate_module, layers, cfg)
            block.add_module(GATE_MODULE, gate)
            hooks.append(gate_module.register_forward_hook(gate.hook))
    encoder._adapter_hooks = hooks  # kept so the gates can be unhooked again
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


def merge_adapters(model: nn.Module, selection: MergeSelection | None = None) -> None:
    """Fold every adapter into its base weight (gated ones need ``selection.fixed_gates``)."""
    for name, layer in adapter_layers(model):
        try:
            layer.merge(selection)
        except RuntimeError as exc:
            raise RuntimeError(f"cannot merge {name}: {exc}") from exc


def unmerge_adapters(model: nn.Module) -> None:
    """Undo :func:`merge_adapters` exactly."""
    for _, layer in adapter_layers(model):
        layer.unmerge()


def remove_adapters(encoder: nn.Module) -> None:
    """Take every adapter out: base layers back in place (unmerged), gates and hooks gone."""
    _unload(encoder, keep_merged=False)


def merge_and_unload(encoder: nn.Module, selection: MergeSelection | None = None) -> None:
    """Fold the adapters into the base weights, then take the adapter modules out."""
    merge_adapters(encoder, selection)
    _unload(encoder, keep_merged=True)


def _unload(encoder: nn.Module, keep_merged: bool) -> None:
    for name, layer in list(adapter_layers(encoder)):
        if not keep_merged:
            layer.unmerge()
        _replace(encoder, name, layer.base)
    for name, module in list(encoder.named_modules()):
        if isinstance(module, PromptAdapterBlock):  # the decoder's block goes back in place
            _replace(encoder, name, module.block)
    for module in list(encoder.modules()):
        if isinstance(getattr(module, "pa_guide", None), nn.Module):
            delattr(module, "pa_guide")
    for handle in getattr(encoder, "_adapter_hooks", []):
        handle.remove()
    encoder._adapter_hooks = []
    for module in list(encoder.modules()):
        if hasattr(module, GATE_MODULE) and isinstance(getattr(module, GATE_MODULE), nn.Module):
            delattr(module, GATE_MODULE)


def active_ranks(model: nn.Module) -> dict[str, torch.Tensor]:
    """Active rank of each gated layer for each image of the last forward pass, ``{name: (B,)}``."""
    return {
        name: layer.active_rank()
        for name, layer in adapter_layers(model)
        if isinstance(layer, GatedRankLinear) and (layer.gates is not None)
    }
