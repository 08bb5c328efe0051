"""Fixtures for the bag and replay-benchmark tests: bags of the bundled frames, a micro model."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
FRAMES = ROOT / "ranksam_ros" / "assets" / "camvid_val"
# Node parameters that make a random micro model produce instances.
EAGER = (
    "pipeline.prompts.threshold=0.0",
    "pipeline.prompts.min_pred_iou=0.0",
    "pipeline.prompts.max_prompts=4",
    "pipeline.min_area=0",
    "threads=1",
)


@pytest.fixture(scope="session")
def eager_params() -> tuple[str, ...]:
    """``key=value`` node parameters that make the random micro model produce instances."""
    return EAGER


@pytest.fixture(scope="session")
def micro_model_dir(tmp_path_factory, make_micro_model) -> Path:
    """A random micro model with a prompt predictor, saved as a model directory."""
    from ranksam_ros.config import CAMVID_CLASSES
    from ranksam_ros.modeling.prompt_predictor import build_prompt_predictor, save_prompt_predictor
    from ranksam_ros.modeling.registry import save_model

    root = tmp_path_factory.mktemp("bench-models") / "micro-model"
    root.mkdir()
    model = make_micro_model()
    save_model(root / "model.safetensors", model)
    save_prompt_predictor(
        root / "prompt_predictor.safetensors", build_prompt_predictor(model.arch, CAMVID_CLASSES)
    )
    return root


@pytest.fixture(scope="session")
def labelled_bag(tmp_path_factory) -> Path:
    """The bundled frames as a compressed MCAP with a label topic (5 Hz stamps)."""
    pytest.importorskip("rosbags")
    from ranksam_ros.bench.bag_writer import make_bag

    path = tmp_path_factory.mktemp("bags") / "camvid.mcap"
    make_bag(FRAMES / "images", path, 5.0, labels=FRAMES / "labels", compressed=True)
    return path


def _run_cli(*args: str, timeout: float = 240.0) -> subprocess.CompletedProcess:
    """``ranksam <args>`` in a fresh process (its own DDS participant and Fast DDS profile)."""
    env = dict(
        os.environ,
        PYTHONPATH=os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
    )
    return subprocess.run(
        [sys.executable, "-m", "ranksam_ros.cli", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
        cwd=ROOT,
    )


@pytest.fixture(scope="session")
def run_cli():
    """Runs ``ranksam <args>`` in a fresh process and returns the completed process."""
    return _run_cli
