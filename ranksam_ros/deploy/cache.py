"""Exports of named models cached on disk, so engines are built once, not at every start."""

from __future__ import annotations

import os
from pathlib import Path

from ranksam_ros.deploy.manifest import MANIFEST, read_manifest


def cache_root() -> Path:
    """``$RANKSAM_CACHE`` or ``~/.cache/ranksam_ros``."""
    return Path(os.environ.get("RANKSAM_CACHE", Path.home() / ".cache" / "ranksam_ros"))


def cached_export(model: str, adapter: str | None) -> Path:
    """Directory holding a verified export of ``model`` + ``adapter``; exported if missing.

    Only names (shipped models) are cached this way; exports of files and directories go
    where the user puts them with ``ranksam export``.
    """
    from ranksam_ros import __version__
    from ranksam_ros.modeling.registry import shipped_models

    if model not in shipped_models():
        raise ValueError(
            f"{model!r} is not an export directory; run `ranksam export --model {model} --out DIR` "
            "and pass DIR as the model"
        )
    target = cache_root() / "exports" / f"{model}+{adapter or 'none'}-v{__version__}"
    if (target / MANIFEST).is_file():
        read_manifest(target)
        return target
    from ranksam_ros.deploy.export import export_model

    export_model(model, target, adapter=adapter)
    return target
