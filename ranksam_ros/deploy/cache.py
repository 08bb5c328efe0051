"""Exports of shipped models kept in a cache directory, so a node can name a model, not a path.

Exporting is always an explicit step: ``ranksam export --model NAME`` (without ``--out``)
writes into the cache, and a node opts in with its ``export_if_missing`` parameter. Engines
only *look up* the cache (:func:`resolve_export`); they never export on their own.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

from ranksam_ros.graph.manifest import MANIFEST, read_manifest


def cache_root() -> Path:
    """``$RANKSAM_CACHE`` or ``~/.cache/ranksam_ros``."""
    return Path(os.environ.get("RANKSAM_CACHE", Path.home() / ".cache" / "ranksam_ros"))


# Sources that decide what an exported graph computes: a change to any of them is a new export.
_GRAPH_SOURCES = (
    "adapters",
    "modeling",
    "graph",
    "deploy/export.py",
    "deploy/onnx_graph.py",
    "deploy/quantize.py",  # what the int8 encoder holds and whether its gate accepts it
)


def export_fingerprint(model_dir: Path) -> str:
    """Short digest of the model's weight files and of the graph-defining sources."""
    package = Path(__file__).resolve().parents[1]
    files = sorted(p for p in model_dir.rglob("*") if p.is_file())
    for source in _GRAPH_SOURCES:
        path = package / source
        files += sorted(path.rglob("*.py")) if path.is_dir() else [path]
    digest = hashlib.sha256()
    for path in files:
        if path.is_file():
            digest.update(path.name.encode())
            digest.update(path.read_bytes())
    return digest.hexdigest()[:12]


def cache_dir_for(model: str, adapter: str | None, precision: str = "fp32") -> Path:
    """Where the export of shipped model ``model`` + ``adapter`` lives in the cache.

    Named by model, adapter, package version and a fingerprint of the weights and the
    graph-defining sources, so edited weights or code never reuse a stale export; an int8
    export (fp32 graphs plus the quantised encoder) has its own directory.

    Raises:
        ValueError: ``model`` is not a shipped model name.
    """
    from ranksam_ros import __version__
    from ranksam_ros.config import PRECISIONS
    from ranksam_ros.modeling.registry import resolve_model_dir, shipped_models

    if precision not in PRECISIONS:
        raise ValueError(f"the cache holds {' and '.join(PRECISIONS)} exports, not {precision!r}")

    if model not in shipped_models():
        raise ValueError(
            f"{model!r} is neither an export directory nor a shipped model "
            f"({', '.join(shipped_models()) or 'none installed'}); run "
            f"`ranksam export --model {model} --out DIR` and pass DIR as the model"
        )
    fingerprint = export_fingerprint(resolve_model_dir(model))
    suffix = "" if precision == "fp32" else f"-{precision}"
    name = f"{model}+{adapter or 'none'}-v{__version__}-{fingerprint}{suffix}"
    return cache_root() / "exports" / name


def export_command(model: str, adapter: str | None, precision: str = "fp32") -> str:
    """The command that writes the cached export of ``model`` + ``adapter``."""
    command = f"ranksam export --model {model} --adapter {adapter or 'none'}"
    return command if precision == "fp32" else f"{command} --precision {precision}"


def is_export_dir(path: str | Path) -> bool:
    """True when ``path`` holds an export (its ``manifest.json``)."""
    return (Path(path) / MANIFEST).is_file()


def resolve_export(model: str, adapter: str | None, precision: str = "fp32") -> Path:
    """The export directory to run: ``model`` itself, or the cached export of a shipped model.

    Raises:
        FileNotFoundError: a shipped model without a cached export (the message names the
            export command; nothing is exported here).
        ValueError: ``model`` is neither an export directory nor a shipped model.
    """
    if is_export_dir(model):
        return Path(model)
    target = cache_dir_for(model, adapter, precision)
    if not is_export_dir(target):
        raise FileNotFoundError(
            f"no {precision} ONNX export of {model}+{adapter or 'none'} for this version: run "
            f"`{export_command(model, adapter, precision)}` (writes {target}), pass an export "
            "directory as the model, or set the node parameter export_if_missing:=true"
        )
    return target


def cached_export(model: str, adapter: str | None, precision: str = "fp32") -> Path:
    """Export shipped ``model`` + ``adapter`` into the cache unless it is there; its directory.

    ``precision`` ``int8`` adds the quantised encoder (when its parity gate accepts it).
    """
    target = cache_dir_for(model, adapter, precision)
    if is_export_dir(target):
        read_manifest(target)
        return target
    from ranksam_ros.deploy.export import export_model

    export_model(model, target, adapter=adapter, precision=precision)
    return target
