"""Training loop: foundation (all of SAM), adapters or the prompt predictor (rest frozen).

Runs as one process or under ``torchrun --nproc_per_node N`` (DDP; gloo on CPU). Every
``save_every`` steps the trainable state, optimiser and step go to ``last.pt`` with an atomic
rename, and a restarted run resumes from it. The final weights are written as safetensors.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
import yaml
from tqdm import tqdm

from ranksam_ros.adapters.inject import inject_adapters, is_adapter_param
from ranksam_ros.adapters.inject import mark_only_adapters_trainable as freeze_base
from ranksam_ros.adapters.io import save_adapters
from ranksam_ros.config import TrainConfig
from ranksam_ros.config_loader import to_dict
from ranksam_ros.data.folder import SegmentationFolder
from ranksam_ros.modeling.checkpoint import atomic_write
from ranksam_ros.modeling.prompt_predictor import (
    PREDICTOR_FILE,
    build_prompt_predictor,
    save_prompt_predictor,
)
from ranksam_ros.modeling.ranksam import RankSam
from ranksam_ros.modeling.registry import build_model, save_model
from ranksam_ros.train.prompt_stage import PromptPredictorLoss, make_prompt_sample
from ranksam_ros.train.samples import class_weights, make_sample
from ranksam_ros.train.step import PromptedLoss

LAST = "last.pt"


@dataclass
class Dist:
    """Where this process sits in a (possibly single-process) run."""

    rank: int = 0
    world: int = 1

    @property
    def main(self) -> bool:
        return self.rank == 0


def setup_distributed() -> Dist:
    """Join the process group that ``torchrun`` describes in the environment (gloo on CPU)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return Dist()
    if not dist.is_initialized():
        backend = "nccl" if torch.cuda.is_available() else "gloo"
        dist.init_process_group(backend=backend)
    return Dist(dist.get_rank(), dist.get_world_size())


def build_trainable(cfg: TrainConfig) -> RankSam:
    """The model of ``cfg.stage`` with exactly the parameters that should train unfrozen."""
    model = build_model(cfg.model)
    if cfg.stage == "adapter":
        inject_adapters(model.sam.image_encoder, cfg.adapter)
        model.adapter_cfg = cfg.adapter
        freeze_base(model)
    elif cfg.stage == "prompt":
        for param in model.parameters():
            param.requires_grad_(False)
        model.prompt_predictor = build_prompt_predictor(model.arch, tuple(cfg.data.class_names))
    else:
        if cfg.init:
            start = build_model(cfg.init)
            # A model without the detail head may start one: the new head begins neutral.
            if dataclasses.replace(start.arch, detail_head=model.arch.detail_head) != model.arch:
                raise ValueError(f"init={cfg.init} has another architecture than model={cfg.model}")
            model.sam.load_state_dict(start.sam.state_dict())
            if start.detail_head is not None and model.detail_head is not None:
                model.detail_head.load_state_dict(start.detail_head.state_dict())
        for name, param in model.named_parameters():
            param.requires_grad_(_model_part(name) not in cfg.freeze)
        if not any(param.requires_grad for param in model.parameters()):
            raise ValueError(f"freeze={list(cfg.freeze)} leaves nothing to train in {cfg.model}")
    return model.train()


def _model_part(name: str) -> str:
    """``sam.image_encoder.x`` -> ``image_encoder``; ``detail_head.x`` -> ``detail_head``."""
    parts = name.split(".")
    return parts[1] if parts[0] == "sam" else parts[0]


def trained_module(model: RankSam, stage: str) -> torch.nn.Module:
    """The module whose weights a stage changes (and checkpoints)."""
    if stage == "prompt":
        return model.prompt_predictor
    # The foundation stage trains SAM and, when the architecture has one, the detail head.
    return model.sam if stage == "adapter" else model


def learning_rate_factor(step: int, cfg: TrainConfig) -> float:
    """Linear warm-up then cosine decay to ``min_lr_ratio``."""
    optim = cfg.optim
    if step < optim.warmup_steps:
        return (step + 1) / optim.warmup_steps
    progress = (step - optim.warmup_steps) / max(1, optim.steps - optim.warmup_steps)
    cosine = 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))
    return optim.min_lr_ratio + (1 - optim.min_lr_ratio) * cosine


def make_optimizer(model: RankSam, cfg: TrainConfig) -> torch.optim.Optimizer:
    gates, others = [], []
    for name, param in model.named_parameters():
        if param.requires_grad:
            (gates if "gated_gate" in name else others).append(param)
    groups = [{"params": others, "lr": cfg.optim.lr, "base_lr": cfg.optim.lr}]
    if gates:
        groups.append({"params": gates, "lr": cfg.optim.gate_lr, "base_lr": cfg.optim.gate_lr})
    return torch.optim.AdamW(groups, weight_decay=cfg.optim.weight_decay)


def trainable_state(model: RankSam, stage: str) -> dict[str, torch.Tensor]:
    state = trained_module(model, stage).state_dict()
    if stage == "adapter":
        return {k: v for k, v in state.items() if is_adapter_param(k)}
    return state


class Trainer:
    """Owns one run: model, optimiser, data, checkpoints and logs under ``cfg.out_dir``."""

    def __init__(self, cfg: TrainConfig, dist_info: Dist | None = None) -> None:
        if not cfg.data.root:
            raise ValueError("data.root is empty: pass --data DIR (holding train/ and val/)")
        self.cfg = cfg
        self.dist = dist_info or setup_distributed()
        threads = cfg.threads or max(1, (os.cpu_count() or 1) // self.dist.world)
        torch.set_num_threads(threads)
        torch.manual_seed(cfg.seed)
        self.out = Path(cfg.out_dir)
        self.out.mkdir(parents=True, exist_ok=True)
        self.folder = SegmentationFolder(
            Path(cfg.data.root) / cfg.data.train_split,
            cache=cfg.data.cache_images,
            exclude_sequences=cfg.data.holdout_sequences,
        )
        self.model = build_trainable(cfg)
        if cfg.stage == "prompt":
            self.step_module = PromptPredictorLoss(self.model, self.model.prompt_predictor)
        else:
            weights = None
            if cfg.loss.semantic_weight > 0 and self.model.semantic_head is not None:
                weights = class_weights(self.folder, cfg.data, cfg.loss.semantic_class_balance)
            self.step_module = PromptedLoss(self.model, cfg.loss, weights)
        self.runner = self.step_module
        if self.dist.world > 1:
            self.runner = torch.nn.parallel.DistributedDataParallel(
                self.step_module, find_unused_parameters=True
            )
        self.optimizer = make_optimizer(self.model, cfg)
        self.step = 0
        self.elapsed = 0.0
        self._resume()

    def _resume(self) -> None:
        path = self.out / LAST
        if not path.is_file():
            return
        state = torch.load(path, map_location="cpu", weights_only=True)
        if state["config"] != to_dict(self.cfg):
            raise ValueError(f"{path} was written by a different config; use another out_dir")
        module = trained_module(self.model, self.cfg.stage)
        module.load_state_dict(state["model"], strict=self.cfg.stage != "adapter")
        self.optimizer.load_state_dict(state["optimizer"])
        self.step = int(state["step"])
        self.elapsed = float(state["elapsed"])
        if self.dist.main:
            print(f"resumed from {path} at step {self.step}")

    def _save_last(self) -> None:
        if not self.dist.main:
            return
        state = {
            "model": trainable_state(self.model, self.cfg.stage),
            "optimizer": self.optimizer.state_dict(),
            "step": self.step,
            "elapsed": self.elapsed,
            "config": to_dict(self.cfg),
        }
        atomic_write(self.out / LAST, lambda tmp: torch.save(state, tmp))

    def _batch(self) -> list:
        rng = np.random.default_rng([self.cfg.seed, self.step, self.dist.rank])
        indices = rng.integers(0, len(self.folder), size=self.cfg.optim.batch_size)
        arch, data = self.model.arch, self.cfg.data
        if self.cfg.stage == "prompt":
            grid = self.model.prompt_predictor.grid
            return [make_prompt_sample(self.folder, int(i), arch, grid, data, rng) for i in indices]
        return [make_sample(self.folder, int(i), arch, data, rng) for i in indices]

    def _out_of_time(self) -> bool:
        limit = self.cfg.optim.time_limit_min * 60
        over = limit > 0 and self.elapsed >= limit
        if self.dist.world > 1:
            flag = torch.tensor([1.0 if over else 0.0])
            dist.all_reduce(flag)
            over = bool(flag.item() > 0)
        return over

    def train(self) -> Path:
        """Run to ``optim.steps`` (or the time limit) and write the final weights."""
        cfg = self.cfg
        if self.dist.main:
            (self.out / "config.yaml").write_text(yaml.safe_dump(to_dict(cfg), sort_keys=False))
        bar = tqdm(
            total=cfg.optim.steps, initial=self.step, disable=not self.dist.main, desc=cfg.stage
        )
        log = (self.out / "log.jsonl").open("a") if self.dist.main else None
        while self.step < cfg.optim.steps and not self._out_of_time():
            started = time.perf_counter()
            stats = self._train_step()
            self.elapsed += time.perf_counter() - started
            self.step += 1
            bar.update(1)
            if self.dist.main and self.step % cfg.log_every == 0:
                stats.update(step=self.step, elapsed_s=round(self.elapsed, 1))
                log.write(json.dumps(stats) + "\n")
                log.flush()
                bar.set_postfix(loss=f"{stats['loss']:.3f}", iou=f"{stats.get('train_iou', 0):.3f}")
            if self.step % cfg.save_every == 0:
                self._save_last()
        bar.close()
        self._save_last()
        if log:
            log.close()
        return self._export()

    def _train_step(self) -> dict[str, float]:
        factor = learning_rate_factor(self.step, self.cfg)
        for group in self.optimizer.param_groups:
            group["lr"] = group["base_lr"] * factor
        loss, stats = self.runner(self._batch())
        if not torch.isfinite(loss):
            raise FloatingPointError(f"non-finite loss at step {self.step}: {stats}")
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        params = [p for p in self.model.parameters() if p.requires_grad]
        if self.cfg.optim.grad_clip > 0:
            torch.nn.utils.clip_grad_norm_(params, self.cfg.optim.grad_clip)
        self.optimizer.step()
        stats["loss"] = float(loss.detach())
        stats["lr"] = self.cfg.optim.lr * factor
        return stats

    def _export(self) -> Path:
        info = {
            "steps": self.step,
            "train_seconds": round(self.elapsed, 1),
            "world": self.dist.world,
        }
        if self.cfg.stage == "adapter":
            path = self.out / "adapter.safetensors"
            if self.dist.main:
                save_adapters(path, self.model.sam.image_encoder, self.cfg.adapter, info)
        elif self.cfg.stage == "prompt":
            path = self.out / PREDICTOR_FILE
            if self.dist.main:
                save_prompt_predictor(path, self.model.prompt_predictor, info)
        else:
            path = self.out / "model.safetensors"
            if self.dist.main:
                save_model(path, self.model, info)
        if self.dist.world > 1:
            dist.barrier()
        return path
