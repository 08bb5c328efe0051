"""Track ids across frames: mask overlap, class and motion, matched by optimal assignment.

A :class:`Tracker` holds the state of one camera. Each frame, :meth:`Tracker.update` predicts
where every live track is (its box centre moved on at its last velocity), scores every
(track, instance) pair that passes the gates, solves the assignment with
``scipy.optimize.linear_sum_assignment`` and writes ``track_id`` into the instances:

- gates: the classes agree (``class_gating``), and the instance's mask overlaps the track's
  last mask, shifted by the predicted motion, by at least ``min_iou`` -- or its box centre lies
  within ``max_distance`` track-box diagonals of the predicted centre (at low frame rates, or
  after dropped frames, masks of one object need not overlap at all);
- cost: ``1 - IoU + distance_weight * distance`` (distance in diagonals), so overlap decides
  and distance breaks ties between overlapping candidates;
- unmatched instances start new tracks (ids count up from 1 and are never reused);
  unmatched tracks are kept, and moved, for ``max_missed_frames`` frames, then retired.

Masks are kept as crops of their box, so memory and IoU cost follow object size, not frame
size. Time comes from header stamps (seconds), so velocities survive dropped frames; a stamp
that goes backwards (a bag replayed in a loop) resets the tracker.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.optimize import linear_sum_assignment

from ranksam_ros.node_config import TrackingConfig
from ranksam_ros.pipeline.result import Instance, Segmentation

_BLOCKED = 1e6  # cost of a pair that fails a gate (never chosen over a real pair)


@dataclass
class MaskCrop:
    """A bool mask stored as its box crop.

    Attributes:
        crop: ``(h, w)`` bool, the mask inside its inclusive box.
        x0: Column of the crop's first pixel in the frame.
        y0: Row of the crop's first pixel in the frame.
        area: Foreground pixel count.
    """

    crop: np.ndarray
    x0: int
    y0: int
    area: int

    @classmethod
    def of(cls, mask: np.ndarray, box: tuple[int, int, int, int]) -> MaskCrop:
        """Crop ``mask`` ``(H, W)`` bool to the inclusive ``box`` ``(x0, y0, x1, y1)``."""
        x0, y0, x1, y1 = box
        crop = mask[y0 : y1 + 1, x0 : x1 + 1]
        return cls(crop.copy(), x0, y0, int(np.count_nonzero(crop)))

    def iou(self, other: MaskCrop, dx: int = 0, dy: int = 0) -> float:
        """IoU with ``other`` after moving this mask by ``(dx, dy)`` pixels."""
        ax0, ay0 = self.x0 + dx, self.y0 + dy
        ah, aw = self.crop.shape
        bh, bw = other.crop.shape
        left, top = max(ax0, other.x0), max(ay0, other.y0)
        right = min(ax0 + aw, other.x0 + bw)
        bottom = min(ay0 + ah, other.y0 + bh)
        if right <= left or bottom <= top:
            return 0.0
        a = self.crop[top - ay0 : bottom - ay0, left - ax0 : right - ax0]
        b = other.crop[top - other.y0 : bottom - other.y0, left - other.x0 : right - other.x0]
        inter = int(np.count_nonzero(a & b))
        union = self.area + other.area - inter
        return inter / union if union else 0.0

    def box(self) -> tuple[int, int, int, int]:
        """Its inclusive box ``(x0, y0, x1, y1)`` in the frame."""
        height, width = self.crop.shape
        return self.x0, self.y0, self.x0 + width - 1, self.y0 + height - 1


@dataclass
class Track:
    """One object followed across frames.

    Attributes:
        track_id: Its id (>= 1).
        class_id: Class of its last instance.
        mask: Its last mask.
        centre: ``(2,)`` box centre (x, y) in pixels when last seen.
        diagonal: Diagonal of its last box in pixels.
        stamp: Time it was last seen (seconds).
        velocity: ``(2,)`` centre velocity in pixels per second (None until seen twice).
        missed: Frames since it was last seen.
        hits: Frames it was seen in.
    """

    track_id: int
    class_id: int
    mask: MaskCrop
    centre: np.ndarray
    diagonal: float
    stamp: float
    velocity: np.ndarray | None = None
    missed: int = 0
    hits: int = 1

    def predicted_centre(self, stamp: float, motion: str) -> np.ndarray:
        """Where its centre is expected at ``stamp`` under the motion model."""
        if motion == "none" or self.velocity is None:
            return self.centre
        return self.centre + self.velocity * max(stamp - self.stamp, 0.0)


@dataclass
class TrackingStats:
    """What one update did.

    Attributes:
        matched: Instances that continued a track.
        started: New tracks.
        retired: Tracks dropped after too many missed frames.
        live: Tracks kept after this frame (seen or coasting).
        reset: The tracker was reset first (the stamp went backwards).
    """

    matched: int = 0
    started: int = 0
    retired: int = 0
    live: int = 0
    reset: bool = False


def _centre_and_diagonal(box: tuple[int, int, int, int]) -> tuple[np.ndarray, float]:
    """Centre ``(2,)`` and diagonal of an inclusive pixel box ``(x0, y0, x1, y1)``."""
    x0, y0, x1, y1 = box
    centre = np.array([(x0 + x1) / 2.0, (y0 + y1) / 2.0])
    return centre, float(np.hypot(x1 - x0 + 1, y1 - y0 + 1))


class Tracker:
    """Track state of one camera.

    Args:
        cfg: Gates, costs, motion model and how long lost tracks are kept (read at every
            update, so it may be swapped between frames).
    """

    def __init__(self, cfg: TrackingConfig | None = None) -> None:
        self.cfg = cfg or TrackingConfig()
        self.tracks: list[Track] = []
        self.next_id = 1
        self.last_stamp: float | None = None
        self.resets = 0  # times the stamp went backwards

    def reset(self) -> None:
        """Forget every track (ids start again from 1)."""
        self.tracks, self.next_id, self.last_stamp = [], 1, None

    def update(self, result: Segmentation, stamp: float) -> TrackingStats:
        """Give every instance of ``result`` a ``track_id`` (in place).

        Args:
            result: One frame's instances (their masks ``(H, W)`` bool and boxes are read).
            stamp: The frame's time in seconds (header stamp), non-decreasing.

        Returns:
            Counts of matched, started, retired and live tracks.
        """
        stats = TrackingStats()
        if self.last_stamp is not None and stamp < self.last_stamp:
            self.reset()
            self.resets += 1
            stats.reset = True
        self.last_stamp = stamp
        instances = result.instances
        crops = [MaskCrop.of(inst.mask, inst.box) for inst in instances]
        pairs = self._assign(instances, crops, stamp)
        matched_tracks = set()
        for row, col in pairs:
            self._continue(self.tracks[row], instances[col], crops[col], stamp)
            matched_tracks.add(row)
        stats.matched = len(pairs)
        kept = []
        for row, track in enumerate(self.tracks):
            if row not in matched_tracks:
                track.missed += 1
                if track.missed > self.cfg.max_missed_frames:
                    stats.retired += 1
                    continue
            kept.append(track)
        self.tracks = kept
        assigned = {col for _, col in pairs}
        for col, inst in enumerate(instances):
            if col not in assigned:
                self.tracks.append(self._start(inst, crops[col], stamp))
                stats.started += 1
        stats.live = len(self.tracks)
        return stats

    def _assign(
        self, instances: list[Instance], crops: list[MaskCrop], stamp: float
    ) -> list[tuple[int, int]]:
        """Optimal (track row, instance column) pairs among those passing the gates."""
        if not self.tracks or not instances:
            return []
        cost = self._cost_matrix(instances, crops, stamp)
        rows, cols = linear_sum_assignment(cost)
        return [(int(r), int(c)) for r, c in zip(rows, cols) if cost[r, c] < _BLOCKED]

    def _cost_matrix(
        self, instances: list[Instance], crops: list[MaskCrop], stamp: float
    ) -> np.ndarray:
        """``(T, N)`` costs, :data:`_BLOCKED` where a gate fails.

        Gates and distances are computed for all pairs at once; the mask IoU (the pixel work)
        only for pairs of the same class whose boxes touch once the track is moved.
        """
        cfg, tracks = self.cfg, self.tracks
        boxes = np.array([inst.box for inst in instances], np.float64)  # (N, 4)
        centres = (boxes[:, :2] + boxes[:, 2:]) / 2.0
        last = np.array([t.centre for t in tracks])  # (T, 2)
        predicted = np.array([t.predicted_centre(stamp, cfg.motion) for t in tracks])
        shifts = np.rint(predicted - last).astype(int)
        diagonals = np.array([max(t.diagonal, 1.0) for t in tracks])
        distance = np.linalg.norm(centres[None] - predicted[:, None], axis=2) / diagonals[:, None]
        same_class = (
            np.array([t.class_id for t in tracks])[:, None]
            == np.array([inst.class_id for inst in instances])[None, :]
        )
        allowed = same_class if cfg.class_gating else np.ones_like(same_class)
        moved = np.array([t.mask.box() for t in tracks], np.float64) + np.tile(shifts, 2)
        touch = (moved[:, None, 0] <= boxes[None, :, 2]) & (boxes[None, :, 0] <= moved[:, None, 2])
        touch &= (moved[:, None, 1] <= boxes[None, :, 3]) & (boxes[None, :, 1] <= moved[:, None, 3])
        iou = np.zeros(distance.shape)
        for row, col in np.argwhere(touch & allowed):
            iou[row, col] = tracks[row].mask.iou(crops[col], *shifts[row].tolist())
        overlaps = (iou > 0) & (iou >= cfg.min_iou)
        ok = allowed & (overlaps | (distance <= cfg.max_distance))
        return np.where(ok, 1.0 - iou + cfg.distance_weight * distance, _BLOCKED)

    def _continue(self, track: Track, inst: Instance, crop: MaskCrop, stamp: float) -> None:
        centre, diagonal = _centre_and_diagonal(inst.box)
        elapsed = stamp - track.stamp
        if elapsed > 0:  # the same stamp twice says nothing about speed
            measured = (centre - track.centre) / elapsed
            if track.velocity is None:
                track.velocity = measured
            else:  # exponential smoothing: one jittery mask should not fling the prediction
                alpha = self.cfg.velocity_smoothing
                track.velocity = alpha * measured + (1 - alpha) * track.velocity
        track.class_id, track.mask = inst.class_id, crop
        track.centre, track.diagonal, track.stamp = centre, diagonal, stamp
        track.missed, track.hits = 0, track.hits + 1
        inst.track_id = track.track_id

    def _start(self, inst: Instance, crop: MaskCrop, stamp: float) -> Track:
        centre, diagonal = _centre_and_diagonal(inst.box)
        track = Track(self.next_id, inst.class_id, crop, centre, diagonal, stamp)
        self.next_id += 1
        inst.track_id = track.track_id
        return track
