"""Multi-task model: a frozen foundation, multi-task encoder adapters and one head per task.

The adapters (a ``tensor_lora`` kind: TA-LoRA, or its STL / HPS baselines) sit in the last
ConvNeXt blocks of the conv encoder only, so the trunk before them runs once per frame and
only the tail (the adapted blocks, the neck and the fine features) runs once per task.
Heads are prompt-free decoders (:class:`TaskHead`). Tasks from CamVid labels:

* ``semantic``: one channel per class;
* ``boundary``: one channel, semantic boundaries;
* ``centre``: three channels, thing-instance centre heatmap and the offset (x, y) of each
  pixel to its instance's centre.
"""

from __future__ import annotations

import torch
from torch import nn

from ranksam_ros.adapters.inject import inject_adapters
from ranksam_ros.adapters.tensor_lora import TensorLoraConfig, set_tasks
from ranksam_ros.modeling.ranksam import RankSam
from ranksam_ros.modeling.task_heads import TaskHead

FIXED_CHANNELS = {"boundary": 1, "centre": 3}


def task_channels(task: str, class_names: tuple[str, ...]) -> int:
    """Output channels of ``task`` (``semantic`` has one per class).

    Raises:
        ValueError: an unknown task.
    """
    if task == "semantic":
        return len(class_names)
    if task not in FIXED_CHANNELS:
        known = ", ".join(("semantic", *FIXED_CHANNELS))
        raise ValueError(f"unknown task {task!r}; tasks are {known}")
    return FIXED_CHANNELS[task]


class MultiTaskSam(nn.Module):
    """Dense outputs of several tasks from one frame.

    Args:
        base: A conv-encoder foundation (frozen here).
        adapter: Multi-task adapter config; its ``tasks`` name the heads, its ``layers``
            (ConvNeXt block indices) must be the last blocks.
        class_names: Classes of the ``semantic`` task.
    """

    def __init__(self, base: RankSam, adapter: TensorLoraConfig, class_names: tuple[str, ...]):
        super().__init__()
        if not base.fine_features:
            raise ValueError(f"multi-task heads need the conv encoder; {base.model_id} has a ViT")
        blocks = len(base.sam.image_encoder.blocks)
        layers = adapter.layers or tuple(range(blocks))
        if tuple(layers) != tuple(range(min(layers), blocks)):
            raise ValueError(
                f"adapter.layers {list(layers)} must be the last encoder blocks "
                f"(e.g. {list(range(blocks - 2, blocks))}), so the first ones run once per frame"
            )
        self.base = base
        self.adapter = adapter
        self.class_names = tuple(class_names)
        self.shared_blocks = min(layers)
        for param in base.parameters():
            param.requires_grad_(False)
        inject_adapters(base.sam.image_encoder, adapter)
        self.heads = nn.ModuleDict(
            {task: TaskHead(base, task_channels(task, class_names)) for task in adapter.tasks}
        )

    @property
    def tasks(self) -> tuple[str, ...]:
        return tuple(self.adapter.tasks)

    def forward(
        self, images: torch.Tensor, tasks: tuple[str, ...] | None = None
    ) -> dict[str, torch.Tensor]:
        """Logits per task ``{task: (B, C_task, m, m)}``.

        Args:
            images: Normalised, padded input ``(B, 3, S, S)``.
            tasks: Tasks to compute (default: all); the trunk runs once for all of them.
        """
        tasks = tasks or self.tasks
        encoder = self.base.sam.image_encoder
        trunk = encoder.trunk(images, self.shared_blocks)
        batch = len(images)
        repeated = tuple(f.repeat(len(tasks), 1, 1, 1) for f in trunk)  # task-major
        index = torch.tensor([self.tasks.index(t) for t in tasks], device=images.device)
        set_tasks(encoder, index.repeat_interleave(batch))
        embedding, fine = encoder.tail(repeated, self.shared_blocks)
        image_pe = self.base.sam.prompt_encoder.get_dense_pe()
        out = {}
        for position, task in enumerate(tasks):
            chunk = slice(position * batch, (position + 1) * batch)
            out[task] = self.heads[task](embedding[chunk], image_pe, fine[chunk])
        return out


def activate(task: str, logits: torch.Tensor) -> torch.Tensor:
    """What a task publishes, of the same shape ``(B, C, m, m)`` as its logits.

    ``semantic``: class probabilities (softmax); ``boundary``: probability (sigmoid);
    ``centre``: heatmap probability, then the raw (x, y) offsets in mask-grid cells.
    """
    if task == "semantic":
        return torch.softmax(logits, dim=1)
    if task == "boundary":
        return torch.sigmoid(logits)
    return torch.cat([torch.sigmoid(logits[:, :1]), logits[:, 1:]], dim=1)
