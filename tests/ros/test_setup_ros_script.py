"""scripts/setup_ros.sh skips cleanly where ROS wheels cannot be used (no install happens)."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "setup_ros.sh"


def _run(tmp_path: Path, arch: str, **env) -> subprocess.CompletedProcess:
    """Run the script with ``uname -m`` reporting ``arch`` and a venv that does not exist."""
    shim = tmp_path / "bin"
    shim.mkdir(exist_ok=True)
    (shim / "uname").write_text(f"#!/bin/sh\necho {arch}\n")
    (shim / "uname").chmod(0o755)
    full_env = dict(os.environ, PATH=f"{shim}:{os.environ['PATH']}", VENV=str(tmp_path / "venv"))
    full_env.pop("RANKSAM_SKIP_ROS", None)
    full_env.update(env)
    return subprocess.run(["bash", str(SCRIPT)], env=full_env, capture_output=True, text=True)


def test_skip_variable(tmp_path):
    done = _run(tmp_path, "x86_64", RANKSAM_SKIP_ROS="1")
    assert done.returncode == 0 and "RANKSAM_SKIP_ROS=1: skipping" in done.stdout


def test_skips_other_architectures(tmp_path):
    done = _run(tmp_path, "aarch64")
    assert done.returncode == 0 and "x86_64 only (aarch64 here): skipping" in done.stdout


def test_missing_venv_is_an_error(tmp_path):
    done = _run(tmp_path, "x86_64")
    assert done.returncode == 1 and "create the venv first" in done.stdout + done.stderr
