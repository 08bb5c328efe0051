"""Safe checkpoint files: our safetensors (weights + config) and official SAM ``.pth`` files.

Nothing here unpickles arbitrary objects: safetensors holds only tensors, and official
``.pth`` files are read with ``torch.load(weights_only=True)``.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, safe_open, save_file

FORMAT = "ranksam/1"
OFFICIAL_SUFFIXES = (".pth", ".pt")


def atomic_write(path: Path, write: Any) -> None:
    """Call ``write(tmp_path)`` then rename over ``path`` so readers never see half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        write(tmp)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def save_tensors(path: str | Path, tensors: dict[str, torch.Tensor], meta: dict[str, Any]) -> None:
    """Write ``tensors`` with JSON-encoded ``meta`` (kind, config, ...) atomically."""
    metadata = {"format": FORMAT, **{k: json.dumps(v) for k, v in meta.items()}}
    clean = {k: v.detach().contiguous().cpu() for k, v in tensors.items()}
    atomic_write(Path(path), lambda tmp: save_file(clean, tmp, metadata=metadata))


def read_meta(path: str | Path) -> dict[str, Any]:
    """Decoded metadata of one of our safetensors files, or ``ValueError`` if it is not one."""
    path = _existing(path)
    try:
        with safe_open(str(path), framework="pt") as handle:
            raw = handle.metadata() or {}
    except (SafetensorError, OSError) as exc:
        raise ValueError(f"{path}: not a readable safetensors file ({exc})") from exc
    if raw.get("format") != FORMAT:
        raise ValueError(f"{path}: not a ranksam checkpoint (format {raw.get('format')!r})")
    return {k: json.loads(v) for k, v in raw.items() if k != "format"}


def load_tensors(path: str | Path, kind: str) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Tensors and metadata of a checkpoint, checking that it holds ``kind`` (sam, adapter...)."""
    meta = read_meta(path)
    if meta.get("kind") != kind:
        raise ValueError(f"{path}: holds {meta.get('kind')!r}, expected {kind!r}")
    try:
        tensors = load_file(str(path))
    except (SafetensorError, OSError) as exc:
        raise ValueError(f"{path}: corrupt safetensors file ({exc})") from exc
    return tensors, meta


def load_official_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """Read an official SAM ``.pth`` (a plain state dict) without unpickling code objects."""
    path = _existing(path)
    try:
        state = torch.load(str(path), map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises several types for corrupt or unsafe files
        raise ValueError(f"{path}: cannot read as a weights-only state dict ({exc})") from exc
    if isinstance(state, dict) and "model" in state and isinstance(state["model"], dict):
        state = state["model"]
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ValueError(f"{path}: expected a mapping of parameter names to tensors")
    return state


def load_state_strict(module: torch.nn.Module, state: dict[str, torch.Tensor], source: str) -> None:
    """``load_state_dict`` with an error that lists missing, unexpected and mis-shaped keys."""
    own = module.state_dict()
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    shapes = [
        f"{k}: file {tuple(state[k].shape)} vs model {tuple(own[k].shape)}"
        for k in own
        if k in state and state[k].shape != own[k].shape
    ]
    if missing or unexpected or shapes:
        parts = []
        if missing:
            parts.append(f"missing {len(missing)} (e.g. {missing[:3]})")
        if unexpected:
            parts.append(f"unexpected {len(unexpected)} (e.g. {unexpected[:3]})")
        if shapes:
            parts.append(f"shape mismatch {len(shapes)} (e.g. {shapes[:2]})")
        raise ValueError(f"{source}: checkpoint does not fit this architecture: {'; '.join(parts)}")
    module.load_state_dict(state, strict=True)


def _existing(path: str | Path) -> Path:
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint not found: {path}")
    return path
