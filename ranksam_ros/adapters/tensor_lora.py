"""TA-LoRA: one low-rank *tensor* update shared across tasks (Tucker), and its two baselines.

For T tasks each adapted weight gets an update tensor ``dW in R^{out x in x T}`` in Tucker form
(``sharing = tucker``): input and output factors ``U1 (R1, in)``, ``U2 (out, R2)`` shared by all
tasks, a task factor ``U3 (T, R3)`` and a core ``G (R1, R2, R3)`` (zero at init, so a new adapter
is the identity). Task ``t``'s slice is exact and static:

    dW_t = s * U2 (sum_v U3[t, v] G[:, :, v])^T U1        (out x in, rank <= min(R1, R2))

so it merges per task. Parameters grow by ``R3`` per extra task. The same layer also runs the
two baselines of the paper's comparison: ``separate`` (LoRA-STL, one rank-``R1`` LoRA per
task) and ``shared`` (LoRA-HPS, one LoRA for every task). Which task each image of a batch
belongs to is set with :func:`set_tasks` before the forward pass (a multi-task batch repeats
each frame once per task).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn

from ranksam_ros.adapters.base import AdapterConfigBase, AdapterLayer, MergeSelection, check

SHARINGS = ("tucker", "separate", "shared")


@dataclass(frozen=True)
class TensorLoraConfig(AdapterConfigBase):
    """Multi-task low-rank update.

    ``tasks``: task names (their order is the task index); ``sharing``: ``tucker`` (TA-LoRA),
    ``separate`` (LoRA-STL) or ``shared`` (LoRA-HPS); ``rank_in`` / ``rank_out``: Tucker ranks
    of the input and output factors (the LoRA rank of the baselines is ``rank_in``);
    ``rank_task``: rank of the task factor; ``scale``: ``s``; ``dropout``: on the branch input
    while training; ``orthogonality_weight``: weight of the factors' orthogonality penalty.
    """

    kind: str = "tensor_lora"
    tasks: tuple[str, ...] = ("semantic", "boundary", "centre")
    sharing: str = "tucker"
    rank_in: int = 8
    rank_out: int = 8
    rank_task: int = 2
    scale: float = 0.5
    dropout: float = 0.1
    orthogonality_weight: float = 1.0

    def __post_init__(self) -> None:
        super().__post_init__()
        check(
            self.kind == "tensor_lora",
            f"TensorLoraConfig has kind 'tensor_lora', got {self.kind!r}",
        )
        check(
            self.sharing in SHARINGS,
            f"adapter.sharing={self.sharing!r} is not one of {', '.join(SHARINGS)}",
        )
        check(len(self.tasks) >= 1, "adapter.tasks must name at least one task")
        check(len(set(self.tasks)) == len(self.tasks), "adapter.tasks must be unique")
        for name in ("rank_in", "rank_out", "rank_task"):
            check(getattr(self, name) >= 1, f"adapter.{name} must be >= 1")
        check(0.0 <= self.dropout < 1.0, "adapter.dropout must be in [0, 1)")


class TensorLoraLinear(AdapterLayer):
    """A frozen linear plus a per-task low-rank update (Tucker, separate or shared).

    Args:
        base: The frozen linear layer.
        cfg: Ranks, sharing, scale and dropout.
    """

    prefix = "tlora_"

    def __init__(self, base: nn.Linear, cfg: TensorLoraConfig) -> None:
        super().__init__(base)
        self.sharing = cfg.sharing
        self.num_tasks = len(cfg.tasks)
        self.scale = cfg.scale
        self.drop = nn.Dropout(cfg.dropout)
        d_in, d_out, r1 = base.in_features, base.out_features, cfg.rank_in
        if cfg.sharing == "tucker":
            self.tlora_U1 = nn.Parameter(torch.randn(r1, d_in) / math.sqrt(d_in))
            self.tlora_U2 = nn.Parameter(torch.randn(d_out, cfg.rank_out) / math.sqrt(d_out))
            self.tlora_U3 = nn.Parameter(torch.randn(self.num_tasks, cfg.rank_task))
            self.tlora_G = nn.Parameter(torch.zeros(r1, cfg.rank_out, cfg.rank_task))
        else:
            copies = self.num_tasks if cfg.sharing == "separate" else 1
            self.tlora_A = nn.Parameter(torch.empty(copies, r1, d_in))
            self.tlora_B = nn.Parameter(torch.zeros(copies, d_out, r1))
            for index in range(copies):
                nn.init.kaiming_uniform_(self.tlora_A[index], a=math.sqrt(5))
        self.tasks: torch.Tensor | None = None

    @classmethod
    def from_config(cls, base: nn.Linear, cfg: TensorLoraConfig) -> TensorLoraLinear:
        return cls(base, cfg)

    def set_tasks(self, tasks: torch.Tensor) -> None:
        """Task index of every image of the next forward pass ``(B,)`` int64."""
        self.tasks = tasks

    def factors(self, task: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Down and up projections of tasks ``(B,)``: ``(B, R, in)`` and ``(B, out, R)``."""
        if self.sharing == "tucker":
            core = torch.einsum("tv,pqv->tpq", self.tlora_U3, self.tlora_G)[task]  # (B, R1, R2)
            down = self.tlora_U1.expand(len(task), -1, -1)
            up = torch.einsum("oq,bpq->bop", self.tlora_U2, core)  # (B, out, R1)
            return down, up
        index = task if self.sharing == "separate" else torch.zeros_like(task)
        return self.tlora_A[index], self.tlora_B[index]

    def delta(self, x: torch.Tensor) -> torch.Tensor:
        if self.tasks is None:
            raise RuntimeError("TensorLoraLinear has no task: call set_tasks(encoder, tasks) first")
        tasks = self.tasks
        if x.shape[0] != len(tasks):  # windowed ViT blocks: each image's windows are contiguous
            tasks = tasks.repeat_interleave(x.shape[0] // len(tasks))
        down, up = self.factors(tasks)
        flat = self.drop(x).reshape(x.shape[0], -1, x.shape[-1])
        hidden = torch.einsum("bni,bri->bnr", flat, down)
        out = torch.einsum("bnr,bor->bno", hidden, up) * self.scale
        return out.reshape(*x.shape[:-1], out.shape[-1])

    def delta_weight(self, selection: MergeSelection | None = None) -> torch.Tensor:
        """``dW_t (out, in)`` of ``selection.task`` (any task for ``shared``)."""
        task = selection.task if selection is not None else None
        if task is None:
            if self.sharing != "shared":
                raise RuntimeError(
                    "multi-task adapters merge one task at a time: pass MergeSelection(task=t)"
                )
            task = 0
        if not 0 <= task < self.num_tasks:
            raise ValueError(f"task {task} out of range for {self.num_tasks} tasks")
        down, up = self.factors(torch.tensor([task]))
        return (up[0] @ down[0]) * self.scale

    def orthogonality(self) -> torch.Tensor:
        """``||U^T U - I||_F`` of the Tucker factors and core slices, averaged (0 otherwise)."""
        if self.sharing != "tucker":
            return self.base.weight.new_zeros(())
        terms = [_gram_gap(self.tlora_U1.t()), _gram_gap(self.tlora_U2)]
        terms += [_gram_gap(self.tlora_G[:, :, v]) for v in range(self.tlora_G.shape[-1])]
        return torch.stack(terms).mean()


def _gram_gap(matrix: torch.Tensor) -> torch.Tensor:
    gram = matrix.t() @ matrix
    return torch.linalg.matrix_norm(gram - torch.eye(gram.shape[0], dtype=gram.dtype))


def set_tasks(module: nn.Module, tasks: torch.Tensor) -> None:
    """Set the task of every image ``(B,)`` on all multi-task adapter layers in ``module``."""
    for layer in module.modules():
        if isinstance(layer, TensorLoraLinear):
            layer.set_tasks(tasks)


def orthogonality_penalty(module: nn.Module) -> torch.Tensor | None:
    """Mean orthogonality penalty over the Tucker layers in ``module`` (None without any)."""
    terms = [m.orthogonality() for m in module.modules() if isinstance(m, TensorLoraLinear)]
    return torch.stack(terms).mean() if terms else None
