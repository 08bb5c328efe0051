"""Flip test-time augmentation: masks averaged over a frame and its mirror image.

Wraps any engine (torch, ONNX Runtime, TensorRT), so it needs no export of its own. Each frame
is encoded twice (as is and mirrored left-right); each prompt is decoded on both, mirrored
into the second, and the two sets of logits (mirrored back) and predicted IoUs are averaged.
The views place edges differently within the 16-pixel tokens, so averaging cancels part of
each one's boundary error, at twice the encoder and decoder cost (docs/results.md). Prompt
prediction reads the original view only, so the same prompts are found with and without it.
Landscape frames (padded at the bottom) mirror exactly; in portrait ones the padding moves
from the right to the left edge.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np

from ranksam_ros.backends.base import Backend
from ranksam_ros.config import TTA_MODES
from ranksam_ros.graph.prompts import is_box_prompt
from ranksam_ros.graph.types import Encoded, PromptMaps


@dataclass
class FlipEncoded(Encoded):
    """An :class:`Encoded` frame carrying the encoding of its mirror image too."""

    mirror: Encoded | None = None


def mirror_prompts(coords: np.ndarray, labels: np.ndarray, size: int) -> np.ndarray:
    """Prompt coordinates ``(N, P, 2)`` in the left-right mirror of a ``size`` square input.

    Coordinates are pixel indices (SAM adds half a pixel), so ``x -> size - 1 - x``. Box
    prompts (labels 2, 3) also swap their corners' x so that the first stays top-left.
    """
    mirrored = np.array(coords, np.float32, copy=True)
    mirrored[..., 0] = size - 1 - mirrored[..., 0]
    if is_box_prompt(labels):
        mirrored[:, :, 0] = mirrored[:, ::-1, 0]
    return mirrored


class FlipTTABackend:
    """Run ``inner`` on each frame and its mirror image and average the masks.

    Args:
        inner: Any engine implementing :class:`Backend`.
    """

    def __init__(self, inner: Backend) -> None:
        self.inner = inner
        self.info = dataclasses.replace(inner.info, model_id=f"{inner.info.model_id}+flip")

    def encode(self, image: np.ndarray) -> FlipEncoded:
        """``(1, 3, S, S)`` input -> its encoding, with the mirror image's in ``mirror``."""
        plain = self.inner.encode(image)
        mirror = self.inner.encode(np.ascontiguousarray(image[..., ::-1]))
        return FlipEncoded(**vars(plain), mirror=mirror)

    def predict_prompts(self, encoded: Encoded, image: np.ndarray) -> PromptMaps:
        """Prompt maps of the original view."""
        return self.inner.predict_prompts(encoded, image)

    def predict_tasks(self, image: np.ndarray, tasks: tuple[str, ...]) -> dict[str, np.ndarray]:
        """Task outputs of the original view."""
        return self.inner.predict_tasks(image, tasks)

    def decode(
        self, encoded: FlipEncoded, coords: np.ndarray, labels: np.ndarray, multimask: bool
    ) -> tuple[np.ndarray, np.ndarray]:
        """Mean of both views: logits ``(N, K, m, m)`` and predicted IoU ``(N, K)``.

        Raises:
            ValueError: ``encoded`` was not made by this backend's :meth:`encode`.
        """
        if not isinstance(encoded, FlipEncoded) or encoded.mirror is None:
            raise ValueError("flip TTA decodes only frames it encoded itself (no mirror view)")
        logits, iou = self.inner.decode(encoded, coords, labels, multimask)
        mirrored = mirror_prompts(coords, labels, self.info.input_size)
        logits_m, iou_m = self.inner.decode(encoded.mirror, mirrored, labels, multimask)
        return 0.5 * (logits + logits_m[..., ::-1]), 0.5 * (iou + iou_m)


def check_tta(tta: str) -> None:
    """Raise ``ValueError`` unless ``tta`` is one of :data:`TTA_MODES`."""
    if tta not in TTA_MODES:
        raise ValueError(f"unknown tta {tta!r}; choose one of {', '.join(TTA_MODES)}")


def with_tta(backend: Backend, tta: str) -> Backend:
    """``backend`` wrapped for test-time augmentation ``tta`` (``none`` returns it as is).

    Raises:
        ValueError: unknown mode.
    """
    check_tta(tta)
    return FlipTTABackend(backend) if tta == "flip" else backend
