"""Input and output names of the exported graphs (written into every export's manifest)."""

from __future__ import annotations

IMAGE = "image"
EMBEDDING = "embedding"
LAYER_RANKS = "layer_ranks"
# Per-image detail the decoder needs beside the embedding: the conv encoder's stride-4
# features or the detail head's; an encoder output and a decoder input.
DETAIL = "detail"
# Class probabilities of the dense semantic head on the mask grid: an encoder output.
SEMANTIC = "semantic"
CONFIDENCE = "confidence"
CLASS_PROBS = "class_probs"
POINT_COORDS = "point_coords"
POINT_LABELS = "point_labels"
MASKS = "masks"
IOU = "iou"

TASKS = "tasks"  # graph of a multi-task set: image -> one output per task
TASK_PREFIX = "task_"  # its outputs: task_<name>, activated (see modeling/multitask.py)
ENCODER = "encoder"
PROMPT_PREDICTOR = "prompt_predictor"
DECODER = "decoder"

IO_NAMES: dict[str, dict[str, list[str]]] = {
    ENCODER: {"inputs": [IMAGE], "outputs": [EMBEDDING, LAYER_RANKS]},
    PROMPT_PREDICTOR: {"inputs": [EMBEDDING, IMAGE], "outputs": [CONFIDENCE, CLASS_PROBS]},
    DECODER: {"inputs": [EMBEDDING, POINT_COORDS, POINT_LABELS], "outputs": [MASKS, IOU]},
}

DECODER_DYNAMIC_AXES = {
    POINT_COORDS: {0: "prompts", 1: "points"},
    POINT_LABELS: {0: "prompts", 1: "points"},
    MASKS: {0: "prompts"},
    IOU: {0: "prompts"},
}


def io_names(with_detail: bool, with_semantic: bool = False) -> dict[str, dict[str, list[str]]]:
    """IO names of a model's graphs.

    ``detail`` joins the encoder's outputs and the decoder's inputs when the decoder takes
    it; ``semantic`` is an encoder output of models with a dense semantic head.
    """
    names = {graph: {k: list(v) for k, v in io.items()} for graph, io in IO_NAMES.items()}
    if with_detail:
        names[ENCODER]["outputs"].append(DETAIL)
        names[DECODER]["inputs"].append(DETAIL)
    if with_semantic:
        names[ENCODER]["outputs"].append(SEMANTIC)
    return names
