"""The frames an evaluation reads: folder and sequence filter, limit, per-frame degradation.

Also the check that a model names the classes the labels use, so a model trained on other
classes fails at the start instead of scoring against the wrong names.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import numpy as np
from tqdm import tqdm

from ranksam_ros.config import DataConfig
from ranksam_ros.data.degrade import eval_degradation
from ranksam_ros.data.folder import SegmentationFolder
from ranksam_ros.eval.options import EvalOptions


def open_frames(options: EvalOptions) -> tuple[SegmentationFolder, list[int]]:
    """The labelled folder ``options.data`` (only ``options.sequences``, when given).

    Returns:
        The folder and the indices of the frames to evaluate: every ``options.stride``-th,
        at most ``options.limit`` of them (0 = no limit).

    Raises:
        FileNotFoundError, ValueError: see :class:`SegmentationFolder`.
    """
    folder = SegmentationFolder(options.data, sequences=options.sequences)
    return folder, frame_indices(len(folder), options.stride, options.limit)


def frame_indices(count: int, stride: int = 1, limit: int = 0) -> list[int]:
    """Every ``stride``-th of ``count`` frames, at most ``limit`` of them (0 = no limit)."""
    indices = list(range(0, count, stride))
    return indices if limit <= 0 else indices[:limit]


def degraded_frames(
    options: EvalOptions, folder: SegmentationFolder, indices: Sequence[int], desc: str
) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """The frames ``indices`` as ``(image (H, W, 3) uint8, label (H, W) uint8)``.

    Each image is degraded as ``options`` asks, deterministically per frame index.
    """
    for index in tqdm(indices, desc=desc, leave=False):
        image, label = folder[index]
        image, _, _ = eval_degradation(
            image, options.degrade, options.seed, index, options.severities
        )
        yield image, label


def check_model_classes(model_classes: Sequence[str], dataset: DataConfig) -> None:
    """Raise ``ValueError`` unless the model's class names (if it has any) are the data's."""
    if model_classes and tuple(model_classes) != tuple(dataset.class_names):
        raise ValueError(
            f"the model's classes {list(model_classes)} are not the data's "
            f"{list(dataset.class_names)} (give the data's with --data-config)"
        )
