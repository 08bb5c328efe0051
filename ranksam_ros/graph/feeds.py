"""Feeding exported graphs and reading their outputs by name (ONNX Runtime and TensorRT).

Both engines go through these helpers, so they apply exactly the same prompt padding and
mask-token selection, and they address every tensor by the name the manifest records.
"""

from __future__ import annotations

import numpy as np

from ranksam_ros.graph import names
from ranksam_ros.graph.types import Encoded, ModelInfo, PromptMaps


def model_info(manifest: dict, engine: str) -> ModelInfo:
    """:class:`ModelInfo` of an export run by ``engine`` (e.g. ``onnxruntime+int8``)."""
    return ModelInfo(
        model_id=f"{manifest['model_id']}@{engine}",
        input_size=int(manifest["input_size"]),
        pixel_mean=tuple(manifest["pixel_mean"]),
        pixel_std=tuple(manifest["pixel_std"]),
        mask_size=int(manifest["mask_size"]),
        class_names=tuple(manifest["class_names"]),
        prompt_predictor=names.PROMPT_PREDICTOR in manifest["graphs"],
        semantic_head=names.SEMANTIC in manifest["graphs"][names.ENCODER]["outputs"],
        tasks=tuple(manifest["graphs"].get(names.TASKS, {}).get("tasks", ())),
        box_mask_threshold=manifest.get("calibration", {}).get("box_mask_threshold"),
    )


def graph_io(manifest: dict, graph: str) -> tuple[list[str], list[str]]:
    """Input and output names of ``graph`` as the manifest records them.

    Raises:
        ValueError: the manifest has no such graph, or lacks a name the contract requires.
    """
    record = manifest["graphs"].get(graph)
    if record is None:
        raise ValueError(f"export has no {graph} graph (graphs: {', '.join(manifest['graphs'])})")
    inputs, outputs = list(record["inputs"]), list(record["outputs"])
    required = names.IO_NAMES[graph]
    missing = sorted(set(required["inputs"]) - set(inputs))
    missing += sorted(set(required["outputs"]) - set(outputs))
    if missing:
        raise ValueError(f"{graph} graph lacks {missing}: re-export it with this version")
    return inputs, outputs


def check_image(image: np.ndarray, input_size: int) -> None:
    """The encoder takes exactly ``(1, 3, S, S)`` float32.

    Raises:
        ValueError: other shape or dtype.
    """
    expected = (1, 3, input_size, input_size)
    if image.shape != expected or image.dtype != np.float32:
        raise ValueError(
            f"encoder input must be float32 {expected}, got {image.dtype} {image.shape}"
        )


def encoded(outputs: dict[str, np.ndarray], layer_names: list[str]) -> Encoded:
    """Encoder outputs by name -> :class:`Encoded`.

    ``layer_ranks (1, L)`` is ignored without gated layers; ``detail`` is there only for
    models whose decoder takes it.
    """
    embedding, ranks = outputs[names.EMBEDDING], outputs[names.LAYER_RANKS]
    detail, semantic = outputs.get(names.DETAIL), outputs.get(names.SEMANTIC)
    if not layer_names:
        return Encoded(embedding, detail=detail, semantic=semantic)
    layer_ranks = {name: float(r) for name, r in zip(layer_names, ranks[0])}
    return Encoded(embedding, float(np.mean(ranks)), layer_ranks, detail, semantic)


def prompt_maps(outputs: dict[str, np.ndarray]) -> PromptMaps:
    """Prompt-predictor outputs by name -> :class:`PromptMaps` of the (single) frame."""
    return PromptMaps(outputs[names.CONFIDENCE][0], outputs[names.CLASS_PROBS][0])


def decoder_feeds(
    encoded: Encoded, coords: np.ndarray, labels: np.ndarray, input_names: list[str]
) -> dict[str, np.ndarray]:
    """Decoder inputs for prompts already passed through ``prompts.decoder_prompts``.

    Raises:
        ValueError: the decoder takes ``detail`` but the frame was encoded without it.
    """
    feeds = {
        names.EMBEDDING: encoded.embedding,
        names.POINT_COORDS: coords,
        names.POINT_LABELS: labels,
    }
    if names.DETAIL in input_names:
        if encoded.detail is None:
            raise ValueError("this decoder takes per-image detail: encode with its encoder")
        feeds[names.DETAIL] = encoded.detail
    return feeds


def run_by_name(session, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Run an ONNX Runtime session; its outputs keyed by their graph names."""
    output_names = [output.name for output in session.get_outputs()]
    return dict(zip(output_names, session.run(None, feeds)))
