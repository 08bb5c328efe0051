"""Import direction around the evaluation package (imports may only point down the layers)."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "ranksam_ros"
# Lowest first; names on one line share a layer.
LAYERS = (
    ("config", "config_loader"),
    ("graph",),
    ("data", "adapters"),
    ("modeling",),
    ("deploy",),
    ("backends",),
    ("pipeline",),
    ("eval", "train"),
    ("ros", "bench"),
    ("demo", "cli", "cli_options"),
)
LAYER = {name: index for index, names in enumerate(LAYERS) for name in names}


def _part(path_or_module: str) -> str:
    """Top-level part of the package a module belongs to: ``eval`` for ``ranksam_ros.eval.x``."""
    return path_or_module.split(".")[1]


def _imports(part: str) -> list[tuple[str, str]]:
    """``(file, imported ranksam_ros module)`` for every import inside the part ``part``."""
    paths = [PACKAGE / f"{part}.py"] if (PACKAGE / f"{part}.py").exists() else []
    paths += sorted((PACKAGE / part).rglob("*.py")) if (PACKAGE / part).is_dir() else []
    found = []
    for path in paths:
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module:
                modules = [node.module]
            elif isinstance(node, ast.Import):
                modules = [alias.name for alias in node.names]
            else:
                continue
            found += [(path.name, m) for m in modules if m.startswith("ranksam_ros.")]
    return found


def test_eval_imports_only_lower_layers():
    imported = _imports("eval")
    assert any(_part(m) == "pipeline" for _, m in imported)  # the scan sees real imports
    upward = [
        (name, m) for name, m in imported if _part(m) != "eval" and LAYER[_part(m)] >= LAYER["eval"]
    ]
    assert upward == []


def test_nothing_at_or_below_the_eval_layer_imports_it():
    lower = [part for part, layer in LAYER.items() if layer <= LAYER["eval"] and part != "eval"]
    offenders = [(part, m) for part in lower for _, m in _imports(part) if _part(m) == "eval"]
    assert offenders == []
    # From above it is allowed, and used: the benchmark and the demo count pixels with it.
    assert all(any(_part(m) == "eval" for _, m in _imports(part)) for part in ("bench", "demo"))
