"""``manifest.json`` of an export: what each graph is, how to feed it, and hashes to trust it.

Every backend reads the manifest (never the model code), so torch, ONNX Runtime and TensorRT
cannot drift; hashes are checked before any inference so a tampered or swapped file is refused.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from ranksam_ros import __version__

MANIFEST = "manifest.json"
FORMAT = "ranksam-export/1"


def sha256_file(path: str | Path) -> str:
    """Hex SHA-256 of a file, read in chunks."""
    digest = hashlib.sha256()
    with Path(path).open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def write_manifest(out_dir: Path, manifest: dict[str, Any]) -> Path:
    """Add format/version fields and file hashes, then write ``manifest.json``."""
    manifest = {"format": FORMAT, "ranksam_version": __version__, **manifest}
    for graph in manifest["graphs"].values():
        graph["sha256"] = sha256_file(out_dir / graph["file"])
    path = out_dir / MANIFEST
    path.write_text(json.dumps(manifest, indent=2) + "\n")
    return path


def read_manifest(export_dir: str | Path, verify: bool = True) -> dict[str, Any]:
    """Load and validate a manifest; with ``verify`` every graph file must match its hash.

    Raises:
        FileNotFoundError: no manifest or a graph file is missing.
        ValueError: another export format, or a file whose hash does not match (tampered,
            truncated or swapped).
    """
    export_dir = Path(export_dir)
    path = export_dir / MANIFEST
    if not path.is_file():
        raise FileNotFoundError(f"{export_dir}: no {MANIFEST} (run `ranksam export` first)")
    try:
        manifest = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise ValueError(f"{path}: not valid JSON ({exc})") from exc
    if manifest.get("format") != FORMAT:
        raise ValueError(
            f"{path}: export format {manifest.get('format')!r} (ranksam "
            f"{manifest.get('ranksam_version')}) is not {FORMAT!r}; re-export with this version"
        )
    if verify:
        for name, graph in manifest["graphs"].items():
            file = export_dir / graph["file"]
            if not file.is_file():
                raise FileNotFoundError(
                    f"{export_dir}: graph {name} file {graph['file']} is missing"
                )
            if sha256_file(file) != graph["sha256"]:
                raise ValueError(f"{file}: SHA-256 differs from the manifest (modified or corrupt)")
    return manifest
