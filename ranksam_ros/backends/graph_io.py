"""Host-side feeding and reading of the exported graphs (ONNX Runtime and TensorRT).

Both engines go through these helpers so they apply exactly the same prompt padding and
mask-token selection.
"""

from __future__ import annotations

import numpy as np

from ranksam_ros.backends.base import BOX_LABELS, Encoded, ModelInfo

DETAIL = "detail"  # IO name of the detail-head features: an encoder output, a decoder input


def model_info(manifest: dict, engine: str) -> ModelInfo:
    """:class:`ModelInfo` of an export run by ``engine`` (e.g. ``onnxruntime+int8``)."""
    return ModelInfo(
        model_id=f"{manifest['model_id']}@{engine}",
        input_size=int(manifest["input_size"]),
        pixel_mean=tuple(manifest["pixel_mean"]),
        pixel_std=tuple(manifest["pixel_std"]),
        mask_size=int(manifest["mask_size"]),
        class_names=tuple(manifest["class_names"]),
    )


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
    models with a detail head.
    """
    embedding, ranks, detail = outputs["embedding"], outputs["layer_ranks"], outputs.get(DETAIL)
    if not layer_names:
        return Encoded(embedding, detail=detail)
    layer_ranks = {name: float(r) for name, r in zip(layer_names, ranks[0])}
    return Encoded(embedding, float(np.mean(ranks)), layer_ranks, detail)


def decoder_feeds(
    encoded: Encoded, coords: np.ndarray, labels: np.ndarray, input_names: list[str]
) -> dict[str, np.ndarray]:
    """Decoder inputs for prompts already passed through :func:`decoder_prompts`.

    Raises:
        ValueError: the decoder takes ``detail`` but the frame was encoded without it.
    """
    feeds = {"embedding": encoded.embedding, "point_coords": coords, "point_labels": labels}
    if DETAIL in input_names:
        if encoded.detail is None:
            raise ValueError("this decoder has a detail head: encode the frame with its encoder")
        feeds[DETAIL] = encoded.detail
    return feeds


def decoder_prompts(coords: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Validate prompts and add SAM's padding point to point-only prompts.

    Args:
        coords: ``(N, P, 2)`` (x, y) in network-input pixels.
        labels: ``(N, P)``; a box prompt is ``P = 2`` with labels ``2, 3``.

    Returns:
        float32 ``(N, P', 2)`` and ``(N, P')``: ``P' = P`` for boxes, ``P + 1`` otherwise.

    Raises:
        ValueError: shapes that do not match.
    """
    coords = np.asarray(coords, np.float32)
    labels = np.asarray(labels, np.float32)
    if coords.ndim != 3 or coords.shape[-1] != 2 or labels.shape != coords.shape[:2]:
        raise ValueError(
            f"prompts must be (N, P, 2) with labels (N, P), got {coords.shape}, {labels.shape}"
        )
    is_box = labels.shape[1] == 2 and np.all(labels == np.asarray(BOX_LABELS, np.float32))
    if not is_box:
        # SAM's prompt encoder appends one padding point to point-only prompts.
        coords = np.concatenate([coords, np.zeros((len(coords), 1, 2), np.float32)], axis=1)
        labels = np.concatenate([labels, -np.ones((len(labels), 1), np.float32)], axis=1)
    return coords, labels


def select_masks(
    masks: np.ndarray, iou: np.ndarray, multimask: bool
) -> tuple[np.ndarray, np.ndarray]:
    """Decoder outputs ``(N, 4, m, m)``, ``(N, 4)`` -> token 0, or tokens 1-3 for multimask.

    Plain indexing, so numpy arrays and torch tensors alike (``RankSam.decode`` uses it too).
    """
    tokens = slice(1, None) if multimask else slice(0, 1)
    return masks[:, tokens], iou[:, tokens]
