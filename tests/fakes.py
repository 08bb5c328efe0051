"""A deterministic numpy backend with designed outputs, so pipeline tests can expect exact results.

:class:`FakeBackend` implements the engine protocol (:class:`ranksam_ros.backends.base.Backend`)
over a made-up scene of rectangles. Geometry: a 64 x 64 network input, 32 x 32 mask logits (2
input pixels per mask cell) and an 8 x 8 prompt grid (8 input pixels, 4 mask cells per grid
cell). Rectangles are given in mask cells, so after the pipeline's bilinear upscaling a
rectangle ``[top, bottom) x [left, right)`` covers exactly the input (and, for a 64 x 64
source, source) pixels ``[2 top, 2 bottom) x [2 left, 2 right)``.

- Prompt maps: the confidence map is zero except at the chosen peak cells; the class
  probabilities are one-hot from a class map over the grid.
- Point prompt: the mask is the first :class:`FakeObject` containing the point, with that
  object's predicted IoU; a point in no object gets an empty mask (the pipeline drops it).
- Box prompt: the mask is every cell the (pixel-inclusive) box touches, grown by ``box_spill``
  cells on each side (a decoder spilling over the box), predicted IoU ``box_iou``.
- Multimask: three copies of the mask with IoUs ``iou``, ``iou - 0.1``, ``iou - 0.2``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ranksam_ros.graph.prompts import decoder_prompts, is_box_prompt
from ranksam_ros.graph.types import Encoded, ModelInfo, PromptMaps

INPUT_SIZE = 64
MASK_SIZE = 32
GRID = 8
INSIDE_LOGIT = 10.0


@dataclass(frozen=True)
class FakeObject:
    """A rectangle of mask cells ``[top, bottom) x [left, right)`` and its predicted IoU."""

    top: int
    left: int
    bottom: int
    right: int
    iou: float = 0.9

    def contains(self, row: int, col: int) -> bool:
        return self.top <= row < self.bottom and self.left <= col < self.right

    def source_pixels(self) -> tuple[slice, slice]:
        """Its rows and columns in a 64 x 64 source image."""
        return slice(2 * self.top, 2 * self.bottom), slice(2 * self.left, 2 * self.right)


@dataclass(frozen=True)
class Peak:
    """A prompt-confidence peak at grid cell ``(row, col)`` of class map ``class_id``."""

    class_id: int
    row: int
    col: int
    confidence: float

    def source_xy(self) -> tuple[float, float]:
        """The cell centre, where the pipeline puts the prompt (64 x 64 source pixels)."""
        cell = INPUT_SIZE / GRID
        return ((self.col + 0.5) * cell, (self.row + 0.5) * cell)


class FakeBackend:
    """The engine protocol in plain numpy over a scene of rectangles.

    Args:
        objects: What a point prompt selects (the first object containing it).
        peaks: Confidence-map peaks (the automatic prompts).
        class_names: Classes of the "prompt predictor"; empty means none.
        class_map: ``(8, 8)`` class id per grid cell for the class probabilities
            (default: class 0 everywhere).
        box_spill: Mask cells a box prompt's mask extends beyond its box on each side.
        box_iou: Predicted IoU of box prompts.
        active_rank: Reported as the adapters' mean active rank.
        semantic_map: ``(32, 32)`` class id per mask cell; given, the model has a semantic
            head whose probabilities are one-hot from it.
    """

    def __init__(
        self,
        objects: tuple[FakeObject, ...] = (),
        peaks: tuple[Peak, ...] = (),
        class_names: tuple[str, ...] = ("a", "b", "c"),
        class_map: np.ndarray | None = None,
        box_spill: int = 0,
        box_iou: float = 0.95,
        active_rank: float | None = None,
        semantic_map: np.ndarray | None = None,
    ) -> None:
        self.objects = objects
        self.peaks = peaks
        self.class_map = np.zeros((GRID, GRID), np.int64) if class_map is None else class_map
        self.box_spill = box_spill
        self.box_iou = box_iou
        self.active_rank = active_rank
        self.semantic_map = semantic_map
        self.decoded_points: list[tuple[float, float]] = []  # input pixels, in decoding order
        self.decoded_boxes: list[tuple[float, ...]] = []  # x0, y0, x1, y1 input pixels
        self.info = ModelInfo(
            model_id="fake",
            input_size=INPUT_SIZE,
            pixel_mean=(0.0, 0.0, 0.0),
            pixel_std=(1.0, 1.0, 1.0),
            mask_size=MASK_SIZE,
            class_names=class_names,
            prompt_predictor=True,
            semantic_head=semantic_map is not None,
        )

    def encode(self, image: np.ndarray) -> Encoded:
        if image.shape != (1, 3, INPUT_SIZE, INPUT_SIZE) or image.dtype != np.float32:
            raise ValueError(f"expected (1, 3, 64, 64) float32, got {image.shape} {image.dtype}")
        embedding = np.ones((1, 4, MASK_SIZE // 4, MASK_SIZE // 4), np.float32)
        semantic = None
        if self.semantic_map is not None:
            semantic = np.zeros((1, len(self.info.class_names), MASK_SIZE, MASK_SIZE), np.float32)
            rows, cols = np.mgrid[:MASK_SIZE, :MASK_SIZE]
            semantic[0, self.semantic_map, rows, cols] = 1.0
        return Encoded(embedding, active_rank=self.active_rank, semantic=semantic)

    def predict_prompts(self, encoded: Encoded, image: np.ndarray) -> PromptMaps:
        classes = max(len(self.info.class_names), 1)
        confidence = np.zeros((classes, GRID, GRID), np.float32)
        for peak in self.peaks:
            confidence[peak.class_id, peak.row, peak.col] = peak.confidence
        class_probs = np.zeros((classes, GRID, GRID), np.float32)
        rows, cols = np.mgrid[:GRID, :GRID]
        class_probs[self.class_map, rows, cols] = 1.0
        return PromptMaps(confidence, class_probs)

    def decode(
        self, encoded: Encoded, coords: np.ndarray, labels: np.ndarray, multimask: bool
    ) -> tuple[np.ndarray, np.ndarray]:
        box = is_box_prompt(labels)
        coords, _ = decoder_prompts(coords, labels)  # the shape checks every engine makes
        masks, ious = zip(*(self._box(c) if box else self._point(c[0]) for c in coords))
        logits = np.where(np.stack(masks), INSIDE_LOGIT, -INSIDE_LOGIT).astype(np.float32)
        iou = np.asarray(ious, np.float32)[:, None]
        if multimask:
            return np.repeat(logits[:, None], 3, axis=1), iou - np.float32([0.0, 0.1, 0.2])
        return logits[:, None], iou

    def _point(self, xy: np.ndarray) -> tuple[np.ndarray, float]:
        self.decoded_points.append((float(xy[0]), float(xy[1])))
        col, row = (np.clip(xy * MASK_SIZE / INPUT_SIZE, 0, MASK_SIZE - 1)).astype(int)
        mask = np.zeros((MASK_SIZE, MASK_SIZE), bool)
        for obj in self.objects:
            if obj.contains(row, col):
                mask[obj.top : obj.bottom, obj.left : obj.right] = True
                return mask, obj.iou
        return mask, 0.0

    def _box(self, corners: np.ndarray) -> tuple[np.ndarray, float]:
        """Every mask cell the pixel-inclusive box touches, grown by ``box_spill``."""
        self.decoded_boxes.append(tuple(float(v) for v in corners.reshape(-1)))
        (x0, y0), (x1, y1) = np.floor(corners * MASK_SIZE / INPUT_SIZE).astype(int)
        top, left = max(y0 - self.box_spill, 0), max(x0 - self.box_spill, 0)
        bottom, right = y1 + 1 + self.box_spill, x1 + 1 + self.box_spill
        mask = np.zeros((MASK_SIZE, MASK_SIZE), bool)
        mask[top:bottom, left:right] = True
        return mask, self.box_iou


def source_mask(*objects: FakeObject) -> np.ndarray:
    """The union of ``objects`` in a 64 x 64 source image."""
    mask = np.zeros((INPUT_SIZE, INPUT_SIZE), bool)
    for obj in objects:
        mask[obj.source_pixels()] = True
    return mask


def blank_image(height: int = INPUT_SIZE, width: int = INPUT_SIZE) -> np.ndarray:
    """A grey RGB frame (the fake ignores pixel values)."""
    return np.full((height, width, 3), 128, np.uint8)
