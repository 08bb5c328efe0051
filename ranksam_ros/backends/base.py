"""The one interface every inference engine implements (numpy in, numpy out).

The pipeline only ever calls these three methods, so PyTorch, ONNX Runtime and TensorRT are
interchangeable. Engines import their runtime lazily inside their own module.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

import numpy as np

BOX_LABELS = (2.0, 3.0)  # SAM's labels for the top-left and bottom-right box corners


def single_threaded_numpy() -> None:
    """Run numpy's BLAS on one thread for the rest of the process.

    The engine owns the cores; the pipeline's numpy work (mask upscaling, NMS) is small.
    Left multi-threaded, OpenBLAS workers keep spinning after each call and starve the next
    encoder pass (measured on 2 cores: torch encoder 121 ms per frame in the pipeline,
    37 ms with one BLAS thread).
    """
    from threadpoolctl import threadpool_limits

    threadpool_limits(limits=1, user_api="blas")


@dataclass(frozen=True)
class ModelInfo:
    """What the pipeline needs to know about a loaded model.

    Attributes:
        model_id: Identity string (model, adapter, engine).
        input_size: Side of the square network input.
        pixel_mean, pixel_std: Normalisation (0-255 scale), RGB.
        mask_size: Side of the low-resolution mask logits.
        class_names: Classes of the prompt predictor (empty without one).
    """

    model_id: str
    input_size: int
    pixel_mean: tuple[float, float, float]
    pixel_std: tuple[float, float, float]
    mask_size: int
    class_names: tuple[str, ...] = ()
    extras: dict = field(default_factory=dict)


@dataclass
class Encoded:
    """Result of encoding one frame.

    Attributes:
        embedding: ``(1, C, h, w)`` float32.
        active_rank: Mean active adapter rank over gated layers (None without gates).
        layer_ranks: Active rank per gated layer (empty without gates).
        detail: Detail-head features ``(1, C', m, m)`` float32 (None without a detail head).
    """

    embedding: np.ndarray
    active_rank: float | None = None
    layer_ranks: dict[str, float] = field(default_factory=dict)
    detail: np.ndarray | None = None


class Backend(Protocol):
    """An inference engine for one model."""

    info: ModelInfo

    def encode(self, image: np.ndarray) -> Encoded:
        """Normalised padded input ``(1, 3, S, S)`` float32 -> image embedding."""
        ...

    def predict_prompts(self, encoded: Encoded, image: np.ndarray) -> np.ndarray:
        """Per-class prompt-confidence maps ``(num_classes, g, g)`` in [0, 1]."""
        ...

    def decode(
        self, encoded: Encoded, coords: np.ndarray, labels: np.ndarray, multimask: bool
    ) -> tuple[np.ndarray, np.ndarray]:
        """Mask logits for N prompts.

        Args:
            encoded: Output of :meth:`encode`.
            coords: ``(N, P, 2)`` (x, y) in network-input pixels.
            labels: ``(N, P)``: 1 foreground, 0 background, -1 padding, 2/3 box corners
                (a box prompt is ``P = 2`` with labels ``2, 3``).
            multimask: Three ambiguity masks instead of one.

        Returns:
            Logits ``(N, K, m, m)`` and predicted IoU ``(N, K)``, ``K`` = 3 or 1.
        """
        ...


def boxes_to_prompts(boxes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Boxes ``(N, 4)`` x0, y0, x1, y1 -> corner prompts ``(N, 2, 2)`` with labels ``(N, 2)``."""
    boxes = np.asarray(boxes, np.float32).reshape(-1, 4)
    coords = boxes.reshape(-1, 2, 2)
    labels = np.tile(np.asarray(BOX_LABELS, np.float32), (len(boxes), 1))
    return coords, labels
