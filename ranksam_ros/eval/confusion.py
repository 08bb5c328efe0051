"""Pixel confusion of true vs predicted classes, and the per-class IoU it gives."""

from __future__ import annotations

import numpy as np


class ConfusionMatrix:
    """Pixel confusion of true classes (rows) vs predicted classes + "unassigned" (last column).

    Args:
        num_classes: ``C``; true labels ``>= C`` (ignored pixels) are not counted, predictions
            ``>= C`` count as "unassigned" (a miss of the true class).
    """

    def __init__(self, num_classes: int) -> None:
        if num_classes < 1:
            raise ValueError(f"num_classes must be >= 1, got {num_classes}")
        self.num_classes = num_classes
        self.matrix = np.zeros((num_classes, num_classes + 1), np.int64)

    def add(self, truth: np.ndarray, predicted: np.ndarray) -> None:
        """Count one frame: ``truth`` and ``predicted`` are class maps of one shape."""
        valid = truth < self.num_classes
        pred = predicted[valid].astype(np.int64)
        pred[pred >= self.num_classes] = self.num_classes
        index = truth[valid].astype(np.int64) * (self.num_classes + 1) + pred
        self.matrix += np.bincount(index, minlength=self.matrix.size).reshape(self.matrix.shape)

    def class_iou(self) -> np.ndarray:
        """IoU per class ``(C,)`` (NaN for classes absent from both truth and prediction)."""
        tp = np.diag(self.matrix[:, : self.num_classes]).astype(np.float64)
        fn = self.matrix.sum(1) - tp
        fp = self.matrix[:, : self.num_classes].sum(0) - tp
        denominator = tp + fp + fn
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(denominator > 0, tp / denominator, np.nan)
