"""Trace-clean wrappers of the training modules with fixed input/output names.

Nothing is re-implemented: the encoder graph runs SAM's encoder with its injected adapters
(gates become ReduceMean -> Gemm -> Gelu -> Gemm -> Greater -> Cast), the predictor graph runs
the prompt predictor, and the decoder graph embeds prompts with segment-anything's own
``SamOnnxModel`` (labels -1..3, i.e. points and box corners) before SAM's mask decoder.
"""

from __future__ import annotations

import torch
from segment_anything.utils.onnx import SamOnnxModel
from torch import nn

from ranksam_ros.adapters.gated_rank import GatedRankLinear
from ranksam_ros.adapters.inject import adapter_layers
from ranksam_ros.graph import names
from ranksam_ros.modeling.multitask import activate
from ranksam_ros.modeling.ranksam import RankSam


def io_names(model: RankSam) -> dict[str, dict[str, list[str]]]:
    """Graph IO names of ``model`` (the contract's, ``detail`` when its decoder takes it)."""
    with_detail = model.detail_head is not None or model.fine_features
    return names.io_names(with_detail, model.semantic_head is not None)


def gated_layers(model: RankSam) -> list[tuple[str, GatedRankLinear]]:
    """The model's gated-rank layers in a fixed order (the columns of ``layer_ranks``)."""
    return [
        (n, m) for n, m in adapter_layers(model.sam.image_encoder) if isinstance(m, GatedRankLinear)
    ]


class EncoderGraph(nn.Module):
    """``image (1, 3, S, S)`` -> ``embedding``, ``layer_ranks`` (``detail``, ``semantic``).

    Shapes: ``embedding (1, C, g, g)``, ``layer_ranks (1, L)``; with a detail head or the conv
    encoder also ``detail (1, C', m, m)``; with a semantic head ``semantic (1, K, m, m)``.
    Without gated adapters ``layer_ranks`` is a single -1 column so every graph has the same
    outputs.
    """

    def __init__(self, model: RankSam) -> None:
        super().__init__()
        self.model = model
        self.gated = [layer for _, layer in gated_layers(model)]

    def forward(self, image: torch.Tensor) -> tuple[torch.Tensor, ...]:
        embedding, detail = self.model.encode_with_detail(image)
        if not self.gated:
            ranks = torch.full((image.shape[0], 1), -1.0)
        else:
            ranks = torch.stack([layer.gates.sum(-1) for layer in self.gated], dim=1)
        outputs = (embedding, ranks) + (() if detail is None else (detail,))
        if self.model.semantic_head is not None:
            outputs += (self.model.semantic_probs(embedding, detail),)
        return outputs


class PromptPredictorGraph(nn.Module):
    """``embedding``, ``image`` -> ``confidence``, ``class_probs`` (each ``(1, C, G, G)``)."""

    def __init__(self, model: RankSam) -> None:
        super().__init__()
        if model.prompt_predictor is None:
            raise ValueError(f"model {model.model_id} has no prompt predictor to export")
        self.predictor = model.prompt_predictor

    def forward(
        self, embedding: torch.Tensor, image: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        return self.predictor(embedding, image)


class DecoderGraph(nn.Module):
    """Prompt encoder + mask decoder for N prompts of P points each.

    Inputs: ``embedding (1, C, g, g)``, ``point_coords (N, P, 2)`` in input pixels,
    ``point_labels (N, P)`` (1 fg, 0 bg, -1 padding, 2/3 box corners) and, with a detail head,
    the encoder's ``detail``.
    Outputs: all four mask-token logits ``masks (N, 4, m, m)`` and ``iou (N, 4)``; the host
    picks token 0 (single mask) or tokens 1-3 (ambiguity masks), as ``MaskDecoder`` does.
    """

    def __init__(self, model: RankSam) -> None:
        super().__init__()
        self.model = model
        self.prompts = SamOnnxModel(model.sam, return_single_mask=False)

    def forward(
        self,
        embedding: torch.Tensor,
        point_coords: torch.Tensor,
        point_labels: torch.Tensor,
        detail: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        sparse = self.prompts._embed_points(point_coords, point_labels)
        prompt_encoder = self.model.sam.prompt_encoder
        grid = prompt_encoder.image_embedding_size
        dense = prompt_encoder.no_mask_embed.weight.reshape(1, -1, 1, 1).expand(1, -1, *grid)
        return self.model.decode_all_tokens(embedding, sparse, dense, detail)


class TaskGraph(nn.Module):
    """``image (1, 3, S, S)`` -> ``task_<name> (1, C, m, m)`` per task, activated.

    The multi-task set's trunk runs once and its adapted tail once per task (the tensor
    update stays a low-rank branch in the graph, one batched pass for every task).
    """

    def __init__(self, task_model: nn.Module) -> None:
        super().__init__()
        self.task_model = task_model

    def forward(self, image: torch.Tensor) -> tuple[torch.Tensor, ...]:
        outputs = self.task_model(image)
        return tuple(activate(task, outputs[task]) for task in self.task_model.tasks)


def task_io_names(task_model: nn.Module) -> dict[str, list[str]]:
    """IO names of a :class:`TaskGraph`."""
    return {
        "inputs": [names.IMAGE],
        "outputs": [names.TASK_PREFIX + task for task in task_model.tasks],
    }
