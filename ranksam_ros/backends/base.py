"""The one interface every inference engine implements (numpy in, numpy out).

The pipeline only ever calls these three methods, so PyTorch, ONNX Runtime and TensorRT are
interchangeable. Engines import their runtime lazily inside their own module; the values they
exchange (:class:`Encoded`, :class:`PromptMaps`, :class:`ModelInfo`) are the graph contract's.
"""

from __future__ import annotations

from typing import Protocol

import numpy as np

from ranksam_ros.graph.types import Encoded, ModelInfo, PromptMaps


def single_threaded_numpy() -> None:
    """Run numpy's BLAS on one thread for the rest of the process.

    The engine owns the cores; the pipeline's numpy work (mask upscaling, NMS) is small.
    Left multi-threaded, OpenBLAS workers keep spinning after each call and starve the next
    encoder pass (measured on 2 cores: torch encoder 121 ms per frame in the pipeline,
    37 ms with one BLAS thread).
    """
    from threadpoolctl import threadpool_limits

    threadpool_limits(limits=1, user_api="blas")


class Backend(Protocol):
    """An inference engine for one model."""

    info: ModelInfo

    def encode(self, image: np.ndarray) -> Encoded:
        """Normalised padded input ``(1, 3, S, S)`` float32 -> image embedding."""
        ...

    def predict_prompts(self, encoded: Encoded, image: np.ndarray) -> PromptMaps:
        """Prompt confidences and class probabilities, each ``(num_classes, G, G)``."""
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

    def predict_tasks(self, image: np.ndarray, tasks: tuple[str, ...]) -> dict[str, np.ndarray]:
        """Dense task outputs ``{task: (C, m, m)}`` for the network input ``(1, 3, S, S)``.

        Only tasks listed in ``info.tasks``; engines without a multi-task set raise.
        """
        ...
