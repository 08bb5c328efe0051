"""The package's import graph: layers only point down, and no module cycle exists.

Layers, lowest first (docs/design.md draws them): config -> graph contract -> data,
adapters -> modeling -> deploy -> backends -> pipeline -> eval, train -> ros, bench -> cli.
Imports inside functions count too: a lazy import is still a dependency.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "ranksam_ros"
LAYERS = (
    ("ranksam_ros", "config", "node_config", "config_loader"),
    ("graph",),
    ("data", "adapters", "checkpoint"),
    ("modeling",),
    ("deploy",),
    ("backends",),
    ("pipeline",),
    ("eval", "train", "reporting"),
    ("ros", "bench"),
    ("demo", "cli", "cli_options"),
)
LAYER_OF = {part: level for level, parts in enumerate(LAYERS) for part in parts}


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _component(module: str) -> str:
    """``ranksam_ros.pipeline.prompts`` -> ``pipeline``; the package itself -> ``ranksam_ros``."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else parts[0]


def import_graph() -> dict[str, set[str]]:
    """Every package module and the package modules it imports."""
    graph = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        deps = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module]
                # ``from ranksam_ros.graph import names`` imports the submodule names.
                names += [f"{node.module}.{alias.name}" for alias in node.names]
            elif isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            else:
                continue
            deps.update(name for name in names if name.split(".")[0] == "ranksam_ros")
        graph[_module_name(path)] = deps
    modules = set(graph)
    return {module: {d for d in deps if d in modules} for module, deps in graph.items()}


def test_every_component_has_a_layer():
    components = {_component(module) for module in import_graph()}
    assert components <= set(LAYER_OF), f"add to LAYERS: {sorted(components - set(LAYER_OF))}"


def test_imports_only_point_down():
    upward = [
        f"{module} -> {dep}"
        for module, deps in import_graph().items()
        for dep in deps
        if LAYER_OF[_component(dep)] > LAYER_OF[_component(module)]
    ]
    assert not upward, "imports against the layer order:\n" + "\n".join(sorted(upward))


def test_no_import_cycles():
    graph = import_graph()
    state: dict[str, int] = {}
    cycles = []

    def visit(module: str, trail: list[str]) -> None:
        state[module] = 1
        for dep in sorted(graph[module]):
            if dep == module or dep in ("ranksam_ros",):
                continue
            if state.get(dep) == 1:
                cycles.append(" -> ".join(trail[trail.index(dep) :] + [dep]))
            elif dep not in state:
                visit(dep, trail + [dep])
        state[module] = 2

    for module in sorted(graph):
        if module not in state:
            visit(module, [module])
    assert not cycles, "import cycles:\n" + "\n".join(cycles)


BLOCKER = """
import sys

class Block:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in ("torch", "rclpy", "onnxruntime", "tensorrt"):
            raise ImportError(f"{name} is blocked in this test")
        return None

sys.meta_path.insert(0, Block())
import ranksam_ros.pipeline.pipeline, ranksam_ros.pipeline.overlay, ranksam_ros.graph.feeds
import ranksam_ros.pipeline.tracking, ranksam_ros.pipeline.depth3d
import ranksam_ros.graph.manifest, ranksam_ros.backends.base, ranksam_ros.data.segments
assert not any(m.split(".")[0] in ("torch", "rclpy", "onnxruntime") for m in sys.modules)
print("numpy core ok")
"""


def test_numpy_core_imports_without_torch_rclpy_or_onnxruntime():
    result = subprocess.run(
        [sys.executable, "-c", BLOCKER], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
    assert "numpy core ok" in result.stdout
