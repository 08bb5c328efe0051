"""Adapter-only files: the adapter tensors plus the config that recreates their layers."""

from __future__ import annotations

from pathlib import Path

from torch import nn

from ranksam_ros.adapters.base import AdapterConfigBase
from ranksam_ros.adapters.inject import adapter_state_dict, inject_adapters
from ranksam_ros.adapters.registry import (
    adapter_target,
    legacy_adapter_config,
    parse_adapter_config,
)
from ranksam_ros.checkpoint import load_tensors, save_tensors
from ranksam_ros.config_loader import to_dict

# Version 2: each kind has its own config. Files without it stored all kinds' fields.
ADAPTER_FORMAT = 2


def save_adapters(
    path: str | Path, root: nn.Module, cfg: AdapterConfigBase, info: dict | None = None
) -> None:
    """Write the adapter tensors of ``root`` and ``cfg`` (plus free-form ``info``) to ``path``.

    ``root``: the ``Sam`` or, for encoder kinds, the image encoder.
    """
    tensors = adapter_state_dict(adapter_target(root, cfg))
    if not tensors:
        raise ValueError("the encoder has no adapters to save")
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
    encoder = adapter_target(root, cfg)
    try:
        inject_adapters(encoder, cfg)
    except ValueError as exc:
        raise ValueError(f"{path}: adapter does not fit this encoder: {exc}") from exc
    expected = adapter_state_dict(encoder)
    missing = sorted(set(expected) - set(tensors))
    unexpected = sorted(set(tensors) - set(expected))
    mismatched = [k for k in expected if k in tensors and tensors[k].shape != expected[k].shape]
    if missing or unexpected or mismatched:
        raise ValueError(
            f"{path}: adapter does not fit this encoder (missing {missing[:3]}, "
            f"unexpected {unexpected[:3]}, shape mismatch {mismatched[:3]})"
        )
    encoder.load_state_dict(tensors, strict=False)  # adapter keys only, checked just above
    return cfg
