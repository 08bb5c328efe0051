"""Adapter-only files: the adapter tensors plus the config that recreates their layers."""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from ranksam_ros.adapters.base import AdapterConfigBase
from ranksam_ros.adapters.inject import adapter_state_dict, inject_adapters
from ranksam_ros.adapters.registry import (
    adapter_target,
    kind_of,
    legacy_adapter_config,
    parse_adapter_config,
)
from ranksam_ros.checkpoint import load_tensors, save_tensors
from ranksam_ros.config_loader import to_dict

# Version 2: each kind has its own config. Files without it stored all kinds' fields.
ADAPTER_FORMAT = 2
# SAM weights an adapter set retrained beside its adapter (PA-SAM retrains decoder parts) are
# stored under this prefix, named within the Sam, so one file is the whole set.
RETRAINED_PREFIX = "retrained:"


def save_adapters(
    path: str | Path,
    root: nn.Module,
    cfg: AdapterConfigBase,
    info: dict | None = None,
    retrained: dict[str, torch.Tensor] | None = None,
) -> None:
    """Write the adapter tensors of ``root`` and ``cfg`` (plus free-form ``info``) to ``path``.

    ``root``: the ``Sam`` or, for encoder kinds, the image encoder. ``retrained``: SAM
    weights (names within the ``Sam``) trained together with the adapter; loading the file
    puts them back.
    """
    tensors = _own_adapter_state(adapter_target(root, cfg), cfg)
    if not tensors:
        raise ValueError("the encoder has no adapters to save")
    tensors.update({RETRAINED_PREFIX + k: v for k, v in (retrained or {}).items()})
    meta = {
        "kind": "adapter",
        "adapter": to_dict(cfg),
        "adapter_format": ADAPTER_FORMAT,
        "info": info or {},
    }
    save_tensors(path, tensors, meta)


def read_adapter_config(meta: dict, path: str | Path) -> AdapterConfigBase:
    """The adapter config stored in an adapter file's metadata."""
    where = f"{path}: adapter"
    if meta.get("adapter_format") == ADAPTER_FORMAT:
        return parse_adapter_config(meta["adapter"], where)
    return legacy_adapter_config(meta["adapter"], where)


def load_adapters(path: str | Path, root: nn.Module) -> AdapterConfigBase:
    """Inject the adapters described in ``path`` into ``root`` and load their weights.

    ``root``: the ``Sam`` (the kind picks its encoder or decoder) or the image encoder.

    Raises:
        FileNotFoundError: ``path`` does not exist.
        ValueError: the file is not an adapter file or does not fit this encoder.
    """
    tensors, meta = load_tensors(path, "adapter")
    cfg = read_adapter_config(meta, path)
    retrained = {
        k.removeprefix(RETRAINED_PREFIX): tensors.pop(k)
        for k in [k for k in tensors if k.startswith(RETRAINED_PREFIX)]
    }

    encoder = adapter_target(root, cfg)
    try:
        inject_adapters(encoder, cfg)
    except ValueError as exc:
        raise ValueError(f"{path}: adapter does not fit this encoder: {exc}") from exc
    expected = _own_adapter_state(encoder, cfg)
    missing = sorted(set(expected) - set(tensors))
    unexpected = sorted(set(tensors) - set(expected))
    mismatched = [k for k in expected if k in tensors and tensors[k].shape != expected[k].shape]
    if missing or unexpected or mismatched:
        raise ValueError(
            f"{path}: adapter does not fit this encoder (missing {missing[:3]}, "
            f"unexpected {unexpected[:3]}, shape mismatch {mismatched[:3]})"
        )
    encoder.load_state_dict(tensors, strict=False)  # adapter keys only, checked just above
    if retrained:  # named as they train: inside the adapted Sam
        _load_retrained(root, retrained, path)
    return cfg


def _own_adapter_state(target: nn.Module, cfg: AdapterConfigBase) -> dict[str, torch.Tensor]:
    """The adapter tensors of ``cfg``'s kind in ``target``, not those of a stacked set.

    A decoder kind's target is the whole ``Sam``, which may also hold an encoder set.
    """
    state = adapter_state_dict(target)
    if kind_of(cfg).target == "image_encoder":
        return state
    return {k: v for k, v in state.items() if not k.startswith("image_encoder.")}


def _load_retrained(sam: nn.Module, retrained: dict[str, torch.Tensor], path) -> None:
    """Put the SAM weights an adapter set retrained into ``sam`` (names and shapes checked)."""
    if not hasattr(sam, "image_encoder"):
        raise ValueError(f"{path}: the set retrained SAM weights: load it into the whole Sam")
    own = sam.state_dict()
    unknown = sorted(k for k in retrained if k not in own)
    mismatched = [k for k in retrained if k in own and own[k].shape != retrained[k].shape]
    if unknown or mismatched:
        raise ValueError(
            f"{path}: retrained SAM weights do not fit this model (unknown {unknown[:3]}, "
            f"shape mismatch {mismatched[:3]})"
        )
    sam.load_state_dict(retrained, strict=False)  # exactly these keys, checked above
