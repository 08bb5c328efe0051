"""Prompt encoding shared by every engine: SAM's point labels, padding and mask-token choice."""

from __future__ import annotations

import numpy as np

BOX_LABELS = (2.0, 3.0)  # SAM's labels for the top-left and bottom-right box corners


def is_box_prompt(labels: np.ndarray) -> bool:
    """True when ``labels (N, P)`` are whole box prompts (``P = 2`` with labels ``2, 3``)."""
    labels = np.asarray(labels)
    return (
        labels.ndim == 2
        and labels.shape[1] == 2
        and bool(np.all(labels == np.asarray(BOX_LABELS, labels.dtype)))
    )


def boxes_to_prompts(boxes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Boxes ``(N, 4)`` x0, y0, x1, y1 -> corner prompts ``(N, 2, 2)`` with labels ``(N, 2)``."""
    boxes = np.asarray(boxes, np.float32).reshape(-1, 4)
    coords = boxes.reshape(-1, 2, 2)
    labels = np.tile(np.asarray(BOX_LABELS, np.float32), (len(boxes), 1))
    return coords, labels


def decoder_prompts(coords: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Validate prompts and add SAM's padding point to point-only prompts.

    Args:
        coords: ``(N, P, 2)`` (x, y) in network-input pixels.
        labels: ``(N, P)``; a box prompt is ``P = 2`` with labels ``2, 3``.

    Returns:
        float32 ``(N, P', 2)`` and ``(N, P')``: ``P' = P`` for boxes, ``P + 1`` otherwise.

    Raises:
        ValueError: shapes that do not match, or box corners mixed into point prompts.
    """
    coords = np.asarray(coords, np.float32)
    labels = np.asarray(labels, np.float32)
    if coords.ndim != 3 or coords.shape[-1] != 2 or labels.shape != coords.shape[:2]:
        raise ValueError(
            f"prompts must be (N, P, 2) with labels (N, P), got {coords.shape}, {labels.shape}"
        )
    if is_box_prompt(labels):
        return coords, labels
    if np.any(labels >= 2):
        raise ValueError("box corners (labels 2, 3) must form whole (N, 2) box prompts")
    # SAM's prompt encoder appends one padding point to point-only prompts.
    coords = np.concatenate([coords, np.zeros((len(coords), 1, 2), np.float32)], axis=1)
    labels = np.concatenate([labels, -np.ones((len(labels), 1), np.float32)], axis=1)
    return coords, labels


def select_masks(masks, iou, multimask: bool):
    """Decoder outputs ``(N, 4, m, m)``, ``(N, 4)`` -> token 0, or tokens 1-3 for multimask.

    Plain indexing, so numpy arrays and torch tensors alike (``RankSam.decode`` uses it too).
    """
    tokens = slice(1, None) if multimask else slice(0, 1)
    return masks[:, tokens], iou[:, tokens]
