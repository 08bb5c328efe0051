"""The ROS code stays Humble-compatible: Python 3.10 syntax, no Jazzy-only rclpy APIs."""

from __future__ import annotations

import ast
import glob
import re
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SOURCES = sorted(
    path
    for pattern in (
        "ranksam_ros/ros/*.py",
        "ranksam_ros/bench/*.py",
        "ranksam_ros/demo.py",
        "tests/ros/*.py",
        "tests/bench/*.py",
    )
    for path in ROOT.glob(pattern)
    if path.name != Path(__file__).name
)
# rclpy APIs that Jazzy has and Humble (rclpy 3.3) lacks.
JAZZY_ONLY = [
    r"add_pre_set_parameters_callback",
    r"add_post_set_parameters_callback",
    r"create_timer\([^)]*autostart",
    r"wait_for_node",
    r"with\s+rclpy\.init",
    r"with\s+\w*executor\w*\s*:",
    r"rclpy\.event_handler",
    r"qos_profile_best_available",
    r"AsyncParameterClient",
    r"ParameterEventHandler",
    r"service_introspection",
]


def _python310() -> str | None:
    candidates = []
    if shutil.which("pyenv"):
        root = subprocess.run(["pyenv", "root"], capture_output=True, text=True).stdout.strip()
        candidates += sorted(glob.glob(f"{root}/versions/3.10.*/bin/python3.10"))
    candidates += [shutil.which("python3.10") or ""]
    for candidate in filter(None, candidates):
        if subprocess.run([candidate, "-c", "pass"], capture_output=True).returncode == 0:
            return candidate
    return None


@pytest.mark.parametrize("path", SOURCES, ids=lambda p: p.name)
def test_parses_as_python_310(path):
    ast.parse(path.read_text(), filename=str(path), feature_version=(3, 10))


@pytest.mark.parametrize("path", SOURCES, ids=lambda p: p.name)
def test_no_jazzy_only_rclpy_api(path):
    text = path.read_text()
    used = [pattern for pattern in JAZZY_ONLY if re.search(pattern, text)]
    assert not used, f"{path.name} uses Jazzy-only rclpy API: {used}"


def test_compiles_with_a_real_python_310(tmp_path):
    python = _python310()
    if python is None:
        pytest.skip("no Python 3.10 interpreter found")
    for path in SOURCES:
        done = subprocess.run(
            [python, "-c", "import ast, sys; ast.parse(open(sys.argv[1]).read())", str(path)],
            capture_output=True,
            text=True,
        )
        assert done.returncode == 0, f"{path.name}: {done.stderr}"
