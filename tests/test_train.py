"""Short training runs: every stage, resume after interruption, and DDP under torchrun."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from ranksam_ros.adapters.inject import adapter_layers, is_adapter_param
from ranksam_ros.checkpoint import read_meta
from ranksam_ros.config_loader import load_config
from ranksam_ros.modeling.registry import build_model
from ranksam_ros.train.config import TrainConfig
from ranksam_ros.train.loop import Trainer

ROOT = Path(__file__).resolve().parents[1]
SMOKE = [
    "optim.batch_size=2",
    "optim.warmup_steps=1",
    "data.prompts_per_image=4",
    "data.cache_images=false",
    "loss.point_samples=256",
    "loss.iou_samples=64",
    "log_every=1",
    "save_every=2",
]


def _config(dataset_root, out, *extra):
    return load_config(
        TrainConfig, None, [*SMOKE, f"data.root={dataset_root}", f"out_dir={out}", *extra]
    )


def test_foundation_smoke_and_resume(dataset_root, tmp_path):
    out = tmp_path / "f"
    cfg = _config(dataset_root, out, "model=micro", "optim.steps=3")
    path = Trainer(cfg).train()
    assert read_meta(path)["kind"] == "sam"
    logs = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
    assert [entry["step"] for entry in logs] == [1, 2, 3]
    assert all(torch.isfinite(torch.tensor(entry["loss"])) for entry in logs)
    # A longer run in the same directory resumes at step 3 instead of starting over.
    more = _config(dataset_root, out, "model=micro", "optim.steps=5")
    with pytest.raises(ValueError, match="different config"):
        Trainer(more)
    (out / "last.pt").rename(out / "last.pt.bak")
    trainer = Trainer(_config(dataset_root, tmp_path / "g", "model=micro", "optim.steps=5"))
    assert trainer.step == 0
    trained = build_model(str(path))
    assert trained.arch.img_size == 64


def test_resume_continues_from_last_checkpoint(dataset_root, tmp_path):
    out = tmp_path / "r"
    cfg = _config(dataset_root, out, "model=micro", "optim.steps=4")
    trainer = Trainer(cfg)
    for _ in range(2):
        trainer._train_step()
        trainer.step += 1
    trainer._save_last()
    resumed = Trainer(cfg)  # as after a kill: a new process with the same config
    assert resumed.step == 2
    for name, value in trainer.model.sam.state_dict().items():
        assert torch.equal(value, resumed.model.sam.state_dict()[name])
    resumed.train()
    steps = [json.loads(line)["step"] for line in (out / "log.jsonl").read_text().splitlines()]
    assert steps == [3, 4]


ADAPTER_SETTINGS = {
    "gated_rank": ("adapter.rank_low=2", "adapter.rank_high=4"),
    "lora": ("adapter.rank=2",),
}


@pytest.mark.parametrize("kind", ["gated_rank", "lora"])
def test_adapter_stage_trains_only_adapters(dataset_root, tmp_path, micro_model, kind):
    from ranksam_ros.modeling.registry import save_model

    base = tmp_path / "base.safetensors"
    save_model(base, micro_model)
    cfg = _config(
        dataset_root,
        tmp_path / kind,
        "stage=adapter",
        f"model={base}",
        f"adapter.kind={kind}",
        *ADAPTER_SETTINGS[kind],
        "data.apply_degrade=true",
        "loss.rank_budget_weight=0.01",
        "optim.steps=2",
    )
    trainer = Trainer(cfg)
    before = {k: v.clone() for k, v in trainer.model.sam.state_dict().items()}
    path = trainer.train()
    after = trainer.model.sam.state_dict()
    changed = {k for k in before if not torch.equal(before[k], after[k])}
    assert changed and all(is_adapter_param(k) for k in changed)
    model = build_model(str(base), adapter=str(path))
    assert len(list(adapter_layers(model))) == 4  # qkv + proj in both blocks
    if kind == "gated_rank":
        model.encode(torch.zeros(1, 3, 64, 64))
        assert model.active_ranks()


def test_prompt_stage(dataset_root, tmp_path, micro_model):
    from ranksam_ros.modeling.prompt_predictor import load_prompt_predictor
    from ranksam_ros.modeling.registry import save_model

    base = tmp_path / "base.safetensors"
    save_model(base, micro_model)
    cfg = _config(dataset_root, tmp_path / "p", "stage=prompt", f"model={base}", "optim.steps=2")
    trainer = Trainer(cfg)
    frozen = {k: v.clone() for k, v in trainer.model.sam.state_dict().items()}
    path = trainer.train()
    assert all(torch.equal(frozen[k], v) for k, v in trainer.model.sam.state_dict().items())
    predictor = load_prompt_predictor(path, micro_model.arch)
    assert predictor.num_classes == 11
    confidence, class_probs = predictor(torch.zeros(1, 32, 8, 8), torch.zeros(1, 3, 64, 64))
    assert confidence.shape == class_probs.shape == (1, 11, 16, 16)
    torch.testing.assert_close(class_probs.sum(1), torch.ones(1, 16, 16))


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.mark.slow
def test_ddp_under_torchrun(dataset_root, tmp_path):
    out = tmp_path / "ddp"
    overrides = [*SMOKE, "model=micro", "optim.steps=2", "threads=1"]
    command = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--nproc_per_node",
        "2",
        "--master_port",
        str(_free_port()),
        "-m",
        "ranksam_ros.cli",
        "train",
        "--config",
        str(ROOT / "config/train/foundation.yaml"),
        "--data",
        str(dataset_root),
        "--out",
        str(out),
    ]
    for item in overrides:
        command += ["--set", item]
    env = dict(os.environ, OMP_NUM_THREADS="1")
    # A new session, so a timeout kills torchrun's workers too and leaves nothing behind.
    process = subprocess.Popen(
        command,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        cwd=ROOT,
        start_new_session=True,
    )
    try:
        _, stderr = process.communicate(timeout=300)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        raise
    assert process.returncode == 0, stderr[-3000:]
    meta = read_meta(out / "model.safetensors")
    assert meta["info"]["world"] == 2 and meta["info"]["steps"] == 2


def test_foundation_can_start_from_a_checkpoint(dataset_root, tmp_path, micro_model):
    from ranksam_ros.modeling.registry import save_model

    start = tmp_path / "start.safetensors"
    save_model(start, micro_model)
    cfg = _config(dataset_root, tmp_path / "ft", "model=micro", f"init={start}", "optim.steps=1")
    trainer = Trainer(cfg)
    for key, value in micro_model.sam.state_dict().items():
        assert torch.equal(value, trainer.model.sam.state_dict()[key])
    with pytest.raises(ValueError, match="another architecture"):
        Trainer(_config(dataset_root, tmp_path / "bad", "model=tiny", f"init={start}"))


def test_decoder_phase_keeps_the_image_encoder_fixed(dataset_root, tmp_path, micro_model):
    from ranksam_ros.modeling.registry import save_model

    start = tmp_path / "start.safetensors"
    save_model(start, micro_model)
    cfg = _config(
        dataset_root,
        tmp_path / "dec",
        "model=micro",
        f"init={start}",
        "freeze=[image_encoder]",
        "optim.steps=2",
    )
    path = Trainer(cfg).train()
    after = build_model(str(path)).sam.state_dict()
    before = micro_model.sam.state_dict()
    encoder = [k for k in before if k.startswith("image_encoder.")]
    decoder = [k for k in before if k.startswith("mask_decoder.")]
    assert all(torch.equal(before[k], after[k]) for k in encoder)
    assert any(not torch.equal(before[k], after[k]) for k in decoder)


def test_resume_is_strict_about_every_key(dataset_root, tmp_path):
    out = tmp_path / "strict"
    cfg = _config(dataset_root, out, "model=micro", "optim.steps=2")
    Trainer(cfg).train()
    state = torch.load(out / "last.pt", weights_only=True)
    state["model"].pop(next(iter(state["model"])))
    torch.save(state, out / "last.pt")
    with pytest.raises(ValueError, match="missing 1"):
        Trainer(cfg)


def test_stage_errors_are_clear(dataset_root, tmp_path):
    with pytest.raises(ValueError, match="stage='decoder' is not one of foundation, adapter"):
        Trainer(_config(dataset_root, tmp_path / "a", "stage=decoder", "model=micro"))
    with pytest.raises(ValueError, match="needs an adapter section"):
        Trainer(_config(dataset_root, tmp_path / "b", "stage=adapter", "model=micro"))
    with pytest.raises(ValueError, match="freeze applies to stage=foundation"):
        Trainer(
            _config(
                dataset_root, tmp_path / "c", "stage=prompt", "model=micro", "freeze=[mask_decoder]"
            )
        )


def test_conv_foundation_trains_the_semantic_head_without_held_out_frames(dataset_root, tmp_path):
    out = tmp_path / "conv"
    cfg = _config(
        dataset_root,
        out,
        "model=micro-conv",
        "optim.steps=2",
        "loss.semantic_weight=1.0",
        "data.holdout_sequences=[0016E5_0796]",
    )
    trainer = Trainer(cfg)
    assert len(trainer.folder) == 5  # 07959 ... 07969 are held out: only 0797x remain
    assert all(not trainer.folder.name(i).startswith("0016E5_0796") for i in range(5))
    head = {k: v.clone() for k, v in trainer.model.semantic_head.state_dict().items()}
    trainer.train()
    logs = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
    assert all(entry["semantic_loss"] > 0 for entry in logs)
    after = trainer.model.semantic_head.state_dict()
    assert any(not torch.equal(head[k], after[k]) for k in head)
    model = build_model(str(out / "model.safetensors"))
    assert model.semantic_head is not None and model.fine_features
