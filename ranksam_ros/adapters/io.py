"""Adapter-only files: the adapter tensors plus the config that recreates their layers."""

from __future__ import annotations

from pathlib import Path

from segment_anything.modeling import ImageEncoderViT

from ranksam_ros.adapters.inject import adapter_state_dict, inject_adapters
from ranksam_ros.config import AdapterConfig
from ranksam_ros.config_loader import from_dict, to_dict
from ranksam_ros.modeling.checkpoint import load_tensors, save_tensors


def save_adapters(
    path: str | Path, encoder: ImageEncoderViT, cfg: AdapterConfig, info: dict | None = None
) -> None:
    """Write the encoder's adapter tensors and ``cfg`` (plus free-form ``info``) to ``path``."""
    tensors = adapter_state_dict(encoder)
    if not tensors:
        raise ValueError("the encoder has no adapters to save")
    save_tensors(path, tensors, {"kind": "adapter", "adapter": to_dict(cfg), "info": info or {}})


def load_adapters(path: str | Path, encoder: ImageEncoderViT) -> AdapterConfig:
    """Inject the adapters described in ``path`` into ``encoder`` and load their weights.

    Raises:
        FileNotFoundError: ``path`` does not exist.
        ValueError: the file is not an adapter file or does not fit this encoder.
    """
    tensors, meta = load_tensors(path, "adapter")
    cfg = from_dict(AdapterConfig, meta["adapter"], "adapter")
    inject_adapters(encoder, cfg)
    expected = adapter_state_dict(encoder)
    missing = sorted(set(expected) - set(tensors))
    unexpected = sorted(set(tensors) - set(expected))
    mismatched = [k for k in expected if k in tensors and tensors[k].shape != expected[k].shape]
    if missing or unexpected or mismatched:
        raise ValueError(
            f"{path}: adapter does not fit this encoder (missing {missing[:3]}, "
            f"unexpected {unexpected[:3]}, shape mismatch {mismatched[:3]})"
        )
    encoder.load_state_dict(tensors, strict=False)
    return cfg
