"""What a pipeline run returns: instances, label maps, prompts, telemetry and timings."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

UNASSIGNED = 255  # semantic label of pixels no mask covers
NAN3 = (float("nan"),) * 3  # a 3D quantity that was not measured


@dataclass
class Instance:
    """One segmented object in source pixels.

    Attributes:
        instance_id: 1-based id, the value of its pixels in ``Segmentation.instance_ids``.
        class_id: Class index (-1 when the model has no classes).
        class_name: Class name ("" when unknown).
        score: Ranking score (predicted IoU x prompt confidence).
        predicted_iou: The decoder's IoU estimate.
        box: ``(x0, y0, x1, y1)`` inclusive pixel box.
        area: Pixel count.
        mask: ``(H, W)`` bool.
        prompt_xy: The point prompt ``(x, y)`` in source pixels (box prompts: the box centre).
        prompt_score: Confidence of the prompt (1.0 for external prompts).
        prompt_index: Which prompt made it: with ``prompt_given``, the index in the given
            ``PromptSet`` (points first, then boxes); otherwise the automatic candidate's.
        prompt_given: True when a given (external) prompt made it.
        track_id: Id that stays with the object across frames (``pipeline/tracking.py``);
            0 = not tracked.
        position: ``(x, y, z)`` metres in the camera's optical frame (x right, y down, z
            forward), the median over the eroded mask's valid depth (``pipeline/depth3d.py``);
            NaN without depth or with too few valid depth pixels.
        extent: ``(x, y, z)`` size in metres along the optical axes (NaN like ``position``).
        depth_valid_ratio: Share of the (eroded) mask's pixels with valid depth, 0 without
            depth.
    """

    instance_id: int
    class_id: int
    class_name: str
    score: float
    predicted_iou: float
    box: tuple[int, int, int, int]
    area: int
    mask: np.ndarray
    prompt_xy: tuple[float, float]
    prompt_score: float
    prompt_index: int = -1
    prompt_given: bool = False
    track_id: int = 0
    position: tuple[float, float, float] = NAN3
    extent: tuple[float, float, float] = NAN3
    depth_valid_ratio: float = 0.0


@dataclass
class Segmentation:
    """The result for one frame.

    Attributes:
        source_hw: ``(H, W)`` of the input frame.
        instances: Sorted by score, best first.
        instance_ids: ``(H, W)`` uint16, 0 = background; overlaps resolved by score.
        semantic: ``(H, W)`` uint8 class ids, 255 = unassigned.
        prompts_xy: Prompts actually decoded ``(K, 2)`` in source pixels.
        prompt_classes: ``(K,)``; prompt_scores ``(K,)``.
        candidates: Candidate prompts before deletion.
        duplicates: Decoded masks the final NMS removed (IoU above ``nms_iou`` with a
            better one): what redundant-prompt deletion failed to prevent.
        panoptic: ``(H, W)`` int32 ``class * 1000 + instance id`` in panoptic mode (stuff
            pixels carry instance 0), None otherwise.
        active_rank: Mean active adapter rank (None without gated adapters).
        layer_ranks: Active rank per gated layer.
        timings_ms: Milliseconds per stage.
    """

    source_hw: tuple[int, int]
    instances: list[Instance]
    instance_ids: np.ndarray
    semantic: np.ndarray
    prompts_xy: np.ndarray
    prompt_classes: np.ndarray
    prompt_scores: np.ndarray
    candidates: int = 0
    duplicates: int = 0
    panoptic: np.ndarray | None = None
    active_rank: float | None = None
    layer_ranks: dict[str, float] = field(default_factory=dict)
    timings_ms: dict[str, float] = field(default_factory=dict)

    @property
    def prompts_decoded(self) -> int:
        return len(self.prompts_xy)

    @classmethod
    def empty(cls, source_hw: tuple[int, int]) -> Segmentation:
        """A well-formed result with nothing found."""
        height, width = source_hw
        return cls(
            source_hw=(height, width),
            instances=[],
            instance_ids=np.zeros((height, width), np.uint16),
            semantic=np.full((height, width), UNASSIGNED, np.uint8),
            prompts_xy=np.zeros((0, 2)),
            prompt_classes=np.zeros(0, np.int64),
            prompt_scores=np.zeros(0, np.float32),
        )
