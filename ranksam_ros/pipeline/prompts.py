"""Point prompts from confidence maps, and redundant-prompt deletion while decoding.

numpy/scipy only. Peaks of the (smoothed) per-class confidence maps become candidate prompts;
candidates are then decoded in confidence order in small batches, and the ones that would
reproduce a mask already accepted (they fall inside it, or look like it on the prompt
elimination map) are dropped before they cost a decoder pass.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from scipy import ndimage

from ranksam_ros.config import PromptConfig


@dataclass
class Candidates:
    """Candidate point prompts, best first.

    Attributes:
        cells: ``(K, 2)`` (row, col) on the confidence grid.
        xy: ``(K, 2)`` (x, y) in network-input pixels (cell centres).
        classes: ``(K,)`` class index of the map each peak came from.
        scores: ``(K,)`` peak confidence.
    """

    cells: np.ndarray
    xy: np.ndarray
    classes: np.ndarray
    scores: np.ndarray

    def __len__(self) -> int:
        return len(self.scores)

    @classmethod
    def empty(cls) -> Candidates:
        return cls(
            np.zeros((0, 2), np.int64),
            np.zeros((0, 2)),
            np.zeros(0, np.int64),
            np.zeros(0, np.float32),
        )

    @classmethod
    def concat(cls, first: Candidates, second: Candidates) -> Candidates:
        return cls(
            np.concatenate([first.cells, second.cells]),
            np.concatenate([first.xy, second.xy]),
            np.concatenate([first.classes, second.classes]),
            np.concatenate([first.scores, second.scores]),
        )

    def subset(self, index: np.ndarray | list[int]) -> Candidates:
        index = np.asarray(index, dtype=np.int64)
        return Candidates(
            self.cells[index], self.xy[index], self.classes[index], self.scores[index]
        )


def find_peaks(maps: np.ndarray, cfg: PromptConfig, input_size: int) -> Candidates:
    """Local maxima of per-class confidence maps.

    Args:
        maps: ``(C, G, G)`` confidences in [0, 1].
        cfg: Smoothing, threshold, spacing and maximum count.
        input_size: Side of the network input the grid covers.

    Returns:
        At most ``cfg.max_prompts`` candidates sorted by confidence; none when nothing passes
        the threshold (or the maps are not finite).
    """
    if maps.ndim != 3:
        raise ValueError(f"confidence maps must be (C, G, G), got {maps.shape}")
    maps = np.nan_to_num(maps.astype(np.float32), nan=0.0, posinf=0.0, neginf=0.0)
    if cfg.smoothing_sigma > 0:
        maps = ndimage.gaussian_filter(maps, sigma=(0, cfg.smoothing_sigma, cfg.smoothing_sigma))
    window = 2 * cfg.min_spacing + 1
    local_max = maps == ndimage.maximum_filter(maps, size=(1, window, window), mode="constant")
    classes, rows, cols = np.nonzero(local_max & (maps >= cfg.threshold))
    scores = maps[classes, rows, cols]
    order = np.argsort(-scores, kind="stable")
    keep: list[int] = []
    for i in order:
        if len(keep) >= cfg.max_prompts:
            break
        if cfg.cross_class_spacing > 0 and keep:
            dist = np.maximum(np.abs(rows[keep] - rows[i]), np.abs(cols[keep] - cols[i]))
            if np.any(dist < cfg.cross_class_spacing):
                continue
        keep.append(int(i))
    keep_arr = np.asarray(keep, dtype=np.int64)
    cells = np.stack([rows[keep_arr], cols[keep_arr]], axis=1).reshape(-1, 2)
    cell = input_size / maps.shape[-1]
    xy = (cells[:, ::-1].astype(np.float64) + 0.5) * cell
    return Candidates(
        cells, xy, classes[keep_arr].astype(np.int64), scores[keep_arr].astype(np.float32)
    )


@dataclass
class DecodedMask:
    """One accepted mask (low resolution, network-input frame).

    Attributes:
        prompt_index: Index of the candidate prompt that made it.
        logits: ``(m, m)`` mask logits.
        mask: ``(m, m)`` bool, the logits above the prompt type's cut.
        pred_iou: The decoder's IoU estimate.
        box: Source-pixel box of a box prompt (the mask is clipped to it); None for points.
    """

    prompt_index: int
    logits: np.ndarray
    mask: np.ndarray
    pred_iou: float
    box: np.ndarray | None = None


@dataclass
class Decoded:
    """What decoding a candidate list produced.

    Attributes:
        accepted: Masks kept, in decoding order.
        tried: Every decoded candidate index, in order.
        decoded: Decoder passes spent (prompts decoded).
        deleted: Candidates dropped as redundant before decoding.
    """

    accepted: list[DecodedMask] = field(default_factory=list)
    tried: list[int] = field(default_factory=list)
    decoded: int = 0
    deleted: int = 0

    def followed_by(self, later: Decoded, offset: int) -> Decoded:
        """This decoding, then ``later``'s whose candidate indices start at ``offset``."""
        shifted = [
            DecodedMask(m.prompt_index + offset, m.logits, m.mask, m.pred_iou, m.box)
            for m in later.accepted
        ]
        return Decoded(
            self.accepted + shifted,
            self.tried + [i + offset for i in later.tried],
            self.decoded + later.decoded,
            self.deleted + later.deleted,
        )


def _best_of(logits: np.ndarray, iou: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    best = np.argmax(iou, axis=1)
    rows = np.arange(len(best))
    return logits[rows, best], iou[rows, best]


def _mask_cell(xy: np.ndarray, mask_size: int, input_size: int) -> tuple[np.ndarray, np.ndarray]:
    scale = mask_size / input_size
    cols = np.clip((xy[:, 0] * scale).astype(np.int64), 0, mask_size - 1)
    rows = np.clip((xy[:, 1] * scale).astype(np.int64), 0, mask_size - 1)
    return rows, cols


def elimination_scores(features: np.ndarray, mask: np.ndarray, cells: np.ndarray) -> np.ndarray:
    """Prompt elimination map at candidate cells: cosine similarity to the mask's prototype.

    Args:
        features: Unit-normalised embedding ``(C, g, g)``.
        mask: Accepted mask ``(m, m)`` bool at mask resolution.
        cells: Candidate positions ``(K, 2)`` (row, col) on the embedding grid.
    """
    grid = features.shape[-1]
    factor = mask.shape[0] // grid
    coarse = mask.reshape(grid, factor, grid, factor).mean(axis=(1, 3)) > 0.5
    if not coarse.any():
        return np.zeros(len(cells), np.float32)
    prototype = features[:, coarse].mean(axis=1)
    prototype /= np.linalg.norm(prototype) + 1e-6
    return np.einsum("c,ck->k", prototype, features[:, cells[:, 0], cells[:, 1]])


def decode_with_deletion(
    candidates: Candidates,
    decode,
    cfg: PromptConfig,
    mask_size: int,
    input_size: int,
    features: np.ndarray | None = None,
    mask_threshold: float = 0.0,
) -> Decoded:
    """Decode candidates best first, dropping those an accepted mask already explains.

    Args:
        candidates: Point prompts sorted by confidence.
        decode: ``decode(xy (N, 2)) -> (logits (N, K, m, m), iou (N, K))`` for N points.
        cfg: Batch size, acceptance and deletion thresholds.
        mask_size: Side ``m`` of the low-resolution logits.
        input_size: Side of the network input.
        features: Unit-normalised embedding ``(C, g, g)`` for the elimination map
            (only used when ``cfg.elimination_threshold > 0``).
        mask_threshold: Logit above which a pixel belongs to the mask.

    Returns:
        The accepted masks and counts of decoded and deleted prompts.
    """
    result = Decoded()
    alive = np.ones(len(candidates), dtype=bool)
    rows, cols = _mask_cell(candidates.xy, mask_size, input_size)
    grid_cells = None
    if features is not None:
        grid_cells = (candidates.xy * features.shape[-1] / input_size).astype(np.int64)[:, ::-1]
        grid_cells = np.clip(grid_cells, 0, features.shape[-1] - 1)
    position = 0
    while position < len(candidates):
        batch = [i for i in range(position, len(candidates)) if alive[i]][: cfg.decode_batch]
        if not batch:
            break
        position = batch[-1] + 1
        logits, iou = _best_of(*decode(candidates.xy[batch]))
        result.decoded += len(batch)
        result.tried.extend(batch)
        for index, lg, score in zip(batch, logits, iou):
            mask = lg > mask_threshold
            if score < cfg.min_pred_iou or not mask.any():
                continue
            result.accepted.append(DecodedMask(index, lg, mask, float(score)))
            if not cfg.delete_redundant or score < cfg.inside_mask_iou:
                continue
            later = np.arange(position, len(candidates))
            later = later[alive[later]]
            drop = mask[rows[later], cols[later]]
            if cfg.elimination_threshold > 0 and features is not None:
                pem = elimination_scores(features, mask, grid_cells[later])
                drop |= pem > cfg.elimination_threshold
            alive[later[drop]] = False
            result.deleted += int(drop.sum())
    return result
