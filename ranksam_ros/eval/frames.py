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


def open_frames(options: EvalOptions) -> tuple[SegmentationFolder, int]:
    """The labelled folder ``options.data`` (only ``options.sequences``, when given).

    Returns:
        The folder and how many of its frames to evaluate (``options.limit``, 0 = all).

    Raises:
        FileNotFoundError, ValueError: see :class:`SegmentationFolder`.
    """
    folder = SegmentationFolder(options.data, sequences=options.sequences)
    count = len(folder) if options.limit <= 0 else min(options.limit, len(folder))
    return folder, count


def degraded_frames(
    options: EvalOptions, folder: SegmentationFolder, count: int, desc: str
) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """The first ``count`` frames as ``(image (H, W, 3) uint8, label (H, W) uint8)``.

    Each image is degraded as ``options`` asks, deterministically per frame index.
    """
    for index in tqdm(range(count), desc=desc, leave=False):
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
