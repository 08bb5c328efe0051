"""Prior correction of a class-weighted semantic head, swept on held-out frames.

A head trained with cross-entropy weighted by ``w_k`` learns logits about ``log w_k`` above
the unweighted ones (the weighted loss is minimised by ``p_k`` proportional to ``w_k q_k``), so
it over-predicts the rare classes the weights favour: on a sequence held out of training
most of their predicted pixels are false positives. Adding ``-tau * log w`` to the logits
(``tau`` 1 undoes the weighting, 0 keeps it) trades their recall back for precision; the
mIoU-optimal ``tau`` depends on the data and is chosen on a held-out sequence (for
``camvid-conv`` it is 1, where val alone would pick 0.5). The offsets go into
the model card (``calibration.semantic_logit_offsets``), where
:meth:`ranksam_ros.modeling.ranksam.RankSam.semantic_probs` adds them.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from tqdm import tqdm

from ranksam_ros.data.folder import SegmentationFolder
from ranksam_ros.eval.confusion import ConfusionMatrix
from ranksam_ros.graph.preprocess import ResizeInfo, preprocess
from ranksam_ros.modeling.ranksam import RankSam
from ranksam_ros.pipeline.panoptic import dense_classes

# One frame for the sweep: raw head logits (K, m, m), its geometry, its label (H, W).
HeadFrame = tuple[np.ndarray, ResizeInfo, np.ndarray]


def prior_offsets(weights: np.ndarray, tau: float) -> np.ndarray:
    """Per-class logit offsets ``-tau * log(weights)``.

    Args:
        weights: ``(K,)`` class weights the head trained with.
        tau: Strength of the correction (1 undoes the weighting).

    Returns:
        ``(K,)`` float64 offsets.

    Raises:
        ValueError: a weight is not positive and finite.
    """
    weights = np.asarray(weights, np.float64)
    if not np.all(np.isfinite(weights) & (weights > 0)):
        raise ValueError(f"class weights must be positive and finite, got {weights.tolist()}")
    return -tau * np.log(weights)


def head_logits(model: RankSam, folder: SegmentationFolder, indices: Sequence[int]) -> list:
    """Run the semantic head (raw logits, no correction) on frames of a folder.

    Args:
        model: A model with a semantic head.
        folder: Labelled frames.
        indices: Which of them.

    Returns:
        One :data:`HeadFrame` per frame.
    """
    arch = model.arch
    frames: list[HeadFrame] = []
    for index in tqdm(indices, desc=f"semantic head on {folder.root.name}"):
        image, label = folder[index]
        tensor, geometry = preprocess(image, arch.img_size, arch.pixel_mean, arch.pixel_std)
        with torch.no_grad():
            embedding, detail = model.encode_with_detail(torch.from_numpy(tensor))
            logits = model.semantic_logits(embedding, detail)[0].numpy()
        frames.append((logits, geometry, label))
    return frames


def sweep_offsets(
    frames: list[HeadFrame], weights: np.ndarray, taus: Sequence[float]
) -> dict[float, np.ndarray]:
    """Score the corrected class map at every strength of the correction, as it is served.

    The class map comes from the pipeline's own :func:`dense_classes` on the softmax of the
    corrected logits, so the sweep scores exactly what the node publishes.

    Args:
        frames: :func:`head_logits` output.
        weights: The class weights ``(K,)`` the head trained with.
        taus: Strengths of the correction to try.

    Returns:
        Per-class IoU ``(K,)`` at each ``tau``.
    """
    num_classes = len(weights)
    confusions = {tau: ConfusionMatrix(num_classes) for tau in taus}
    offsets = {tau: prior_offsets(weights, tau)[:, None, None].astype(np.float32) for tau in taus}
    for logits, geometry, label in frames:
        for tau in taus:
            probs = torch.softmax(torch.from_numpy(logits + offsets[tau]), dim=0).numpy()
            confusions[tau].add(label, dense_classes(probs, geometry)[0])
    return {tau: matrix.class_iou() for tau, matrix in confusions.items()}
