"""Prior correction of a class-weighted semantic head, swept on held-out frames.

A head trained with cross-entropy weighted by ``w_k`` learns logits about ``log w_k`` above
the unweighted ones (the weighted loss is minimised by ``p_k`` proportional to ``w_k q_k``), so
it over-predicts the rare classes the weights favour: on a sequence held out of training
most of their predicted pixels are false positives. Adding ``-tau * log w`` to the logits
(``tau`` 1 undoes the weighting, 0 keeps it) trades their recall back for precision; the
mIoU-optimal ``tau`` lies in between and is chosen on a held-out sequence. The offsets go into
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
from ranksam_ros.graph.preprocess import preprocess
from ranksam_ros.pipeline.postprocess import upscale_logits


def prior_offsets(weights: np.ndarray, tau: float) -> np.ndarray:
    """Per-class logit offsets ``-tau * log(weights)`` ``(K,)``.

    Raises:
        ValueError: a weight is not positive and finite.
    """
    weights = np.asarray(weights, np.float64)
    if not np.all(np.isfinite(weights) & (weights > 0)):
        raise ValueError(f"class weights must be positive and finite, got {weights.tolist()}")
    return -tau * np.log(weights)


def head_logits(model, folder: SegmentationFolder, indices: Sequence[int]) -> list:
    """The semantic head's raw logits ``(K, m, m)``, geometry and label of each frame."""
    arch = model.arch
    frames = []
    for index in tqdm(indices, desc=f"semantic head on {folder.root.name}"):
        image, label = folder[index]
        tensor, geometry = preprocess(image, arch.img_size, arch.pixel_mean, arch.pixel_std)
        with torch.no_grad():
            embedding, detail = model.encode_with_detail(torch.from_numpy(tensor))
            logits = model.semantic_logits(embedding, detail)[0].numpy()
        frames.append((logits, geometry, label))
    return frames


def sweep_offsets(
    frames: list, weights: np.ndarray, taus: Sequence[float]
) -> dict[float, np.ndarray]:
    """Per-class IoU ``(K,)`` of the corrected class map at every ``tau``.

    Args:
        frames: :func:`head_logits` output.
        weights: The class weights ``(K,)`` the head trained with.
        taus: Strengths of the correction to try.
    """
    num_classes = len(weights)
    confusions = {tau: ConfusionMatrix(num_classes) for tau in taus}
    for logits, geometry, label in frames:
        for tau in taus:
            shifted = logits + prior_offsets(weights, tau)[:, None, None].astype(np.float32)
            confusions[tau].add(label, np.argmax(upscale_logits(shifted, geometry), axis=0))
    return {tau: matrix.class_iou() for tau, matrix in confusions.items()}
