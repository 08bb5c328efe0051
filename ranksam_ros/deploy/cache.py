"""Exports of named models cached on disk, so engines are built once, not at every start."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

from ranksam_ros.deploy.manifest import MANIFEST, read_manifest


def cache_root() -> Path:
    """``$RANKSAM_CACHE`` or ``~/.cache/ranksam_ros``."""
    return Path(os.environ.get("RANKSAM_CACHE", Path.home() / ".cache" / "ranksam_ros"))


# Sources that decide what an exported graph computes: a change to any of them is a new export.
_GRAPH_SOURCES = ("adapters", "modeling", "deploy/export.py", "deploy/onnx_graph.py")


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


def cached_export(model: str, adapter: str | None) -> Path:
    """Directory holding a verified export of ``model`` + ``adapter``; exported if missing.

    The cache entry is named by model, adapter, package version and a fingerprint of the
    weights and graph-defining sources, so edited weights or code never reuse a stale export.
    Only names (shipped models) are cached this way; exports of files and directories go
    where the user puts them with ``ranksam export``.
    """
    from ranksam_ros import __version__
    from ranksam_ros.modeling.registry import resolve_model_dir, shipped_models

    if model not in shipped_models():
        raise ValueError(
            f"{model!r} is not an export directory; run `ranksam export --model {model} --out DIR` "
            "and pass DIR as the model"
        )
    fingerprint = export_fingerprint(resolve_model_dir(model))
    name = f"{model}+{adapter or 'none'}-v{__version__}-{fingerprint}"
    target = cache_root() / "exports" / name
    if (target / MANIFEST).is_file():
        read_manifest(target)
        return target
    from ranksam_ros.deploy.export import export_model

    export_model(model, target, adapter=adapter)
    return target
