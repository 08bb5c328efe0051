"""Training loop: the same for every stage (foundation, adapters, prompt predictor ...).

Runs as one process or under ``torchrun --nproc_per_node N`` (DDP; gloo on CPU). The stage
object (:mod:`ranksam_ros.train.stages`) owns what differs: modules, samples, loss and the
saved result. Every ``save_every`` steps the stage's trainable state, the optimiser and the
step go to ``last.pt`` with an atomic rename, and a restarted run resumes from it (strictly:
every key must fit). The final weights are written as safetensors.
"""

from __future__ import annotations

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

from ranksam_ros.checkpoint import atomic_write
from ranksam_ros.config_loader import to_dict
from ranksam_ros.data.folder import SegmentationFolder
from ranksam_ros.train.config import TrainConfig
from ranksam_ros.train.stages import make_stage

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


def learning_rate_factor(step: int, cfg: TrainConfig) -> float:
    """Linear warm-up then cosine decay to ``min_lr_ratio``."""
    optim = cfg.optim
    if step < optim.warmup_steps:
        return (step + 1) / optim.warmup_steps
    progress = (step - optim.warmup_steps) / max(1, optim.steps - optim.warmup_steps)
    cosine = 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))
    return optim.min_lr_ratio + (1 - optim.min_lr_ratio) * cosine


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
        self.stage = make_stage(cfg, self.folder)
        self.model = self.stage.model
        self.runner = self.stage.loss
        if self.dist.world > 1:
            self.runner = torch.nn.parallel.DistributedDataParallel(
                self.stage.loss, find_unused_parameters=True
            )
        self.optimizer = torch.optim.AdamW(
            self.stage.param_groups(), weight_decay=cfg.optim.weight_decay
        )
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
        self.stage.load_trainable_state(state["model"], str(path))
        self.optimizer.load_state_dict(state["optimizer"])
        self.step = int(state["step"])
        self.elapsed = float(state["elapsed"])
        if self.dist.main:
            print(f"resumed from {path} at step {self.step}")

    def _save_last(self) -> None:
        if not self.dist.main:
            return
        state = {
            "model": self.stage.trainable_state(),
            "optimizer": self.optimizer.state_dict(),
            "step": self.step,
            "elapsed": self.elapsed,
            "config": to_dict(self.cfg),
        }
        atomic_write(self.out / LAST, lambda tmp: torch.save(state, tmp))

    def _batch(self) -> list:
        rng = np.random.default_rng([self.cfg.seed, self.step, self.dist.rank])
        indices = rng.integers(0, len(self.folder), size=self.cfg.optim.batch_size)
        return [self.stage.make_sample(int(i), rng) for i in indices]

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
                bar.set_postfix({k: f"{stats[k]:.3f}" for k in ("loss", "train_iou") if k in stats})
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
            "holdout_sequences": list(self.cfg.data.holdout_sequences),
        }
        path = self.out / self.stage.output_file
        if self.dist.main:
            self.stage.save(self.out, info)
        if self.dist.world > 1:
            dist.barrier()
        return path
