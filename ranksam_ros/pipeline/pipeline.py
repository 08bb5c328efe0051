"""``Pipeline(backend, cfg)(image) -> Segmentation``: the runtime core, numpy only.

Stages (each timed): preprocess -> encode -> prompts (predictor + peaks, or given prompts) ->
decode with redundant-prompt deletion -> postprocess (NMS, masks in source pixels, classes,
label maps). The encoded frame can be kept and segmented again with other prompts without a
second encoder pass (the ROS service does this).
"""

from __future__ import annotations

import time
from contextlib import contextmanager
from dataclasses import dataclass, replace

import numpy as np

from ranksam_ros.backends.base import Backend
from ranksam_ros.config import PipelineConfig
from ranksam_ros.graph.preprocess import ResizeInfo, check_image, preprocess
from ranksam_ros.graph.types import Encoded, PromptMaps
from ranksam_ros.pipeline import panoptic
from ranksam_ros.pipeline.class_pooling import pool_class_probs, soft_mask_weights
from ranksam_ros.pipeline.given import PromptSet, box_array, decode_given, logit_cuts
from ranksam_ros.pipeline.postprocess import (
    fill_unassigned,
    mask_nms,
    paint_labels,
    upscale_masks,
)
from ranksam_ros.pipeline.prompts import (
    Candidates,
    Decoded,
    decode_with_deletion,
    find_peaks,
)
from ranksam_ros.pipeline.result import UNASSIGNED, Instance, Segmentation

CONFIDENCE_CELL = 8  # network-input pixels per confidence-map cell (PromptConfig's spacing unit)


@dataclass
class EncodedFrame:
    """A preprocessed, encoded frame (reusable for several prompt sets)."""

    tensor: np.ndarray
    geometry: ResizeInfo
    encoded: Encoded
    maps: PromptMaps | None = None
    timings_ms: dict[str, float] | None = None


class _Timer:
    def __init__(self) -> None:
        self.ms: dict[str, float] = {}

    @contextmanager
    def stage(self, name: str):
        start = time.perf_counter()
        yield
        self.ms[name] = self.ms.get(name, 0.0) + (time.perf_counter() - start) * 1000.0


class Pipeline:
    """Promptless (or prompted) segmentation of RGB frames with any backend.

    Args:
        backend: An engine implementing :class:`ranksam_ros.backends.base.Backend`.
        cfg: Prompt selection and postprocessing settings.
    """

    def __init__(self, backend: Backend, cfg: PipelineConfig | None = None) -> None:
        self.backend = backend
        self.class_names = tuple(backend.info.class_names)
        self.cfg = cfg or PipelineConfig()

    @property
    def cfg(self) -> PipelineConfig:
        return self._cfg

    @cfg.setter
    def cfg(self, cfg: PipelineConfig) -> None:
        """Settings for the next frame (the node swaps them on a parameter change).

        An unset box cut becomes the model's own, and what the settings decide (panoptic or
        not, which classes are things) follows them, whether set here or later.
        """
        info = self.backend.info
        self._cfg = cfg.for_model(info.box_mask_threshold)
        # Panoptic output needs a dense class map: models without a semantic head give
        # instances of every class as before.
        self.panoptic = self._cfg.mode == "panoptic" and info.semantic_head
        self.things = (
            panoptic.thing_mask(self.class_names, self._cfg.thing_classes)
            if self.panoptic
            else None
        )

    def __call__(self, image: np.ndarray, prompts: PromptSet | None = None) -> Segmentation:
        """Segment one RGB uint8 frame ``(H, W, 3)``; ``prompts=None`` means automatic prompts."""
        frame = self.encode(image, need_maps=self.needs_prompt_maps(auto=prompts is None))
        return self.segment(frame, prompts)

    def encode(
        self, image: np.ndarray, timer: _Timer | None = None, need_maps: bool = True
    ) -> EncodedFrame:
        """Preprocess and encode a frame (and run the prompt predictor when it has one)."""
        timer = timer or _Timer()
        check_image(image)
        info = self.backend.info
        with timer.stage("preprocess"):
            tensor, geometry = preprocess(image, info.input_size, info.pixel_mean, info.pixel_std)
        with timer.stage("encoder"):
            encoded = self.backend.encode(tensor)
        maps = None
        if need_maps and info.prompt_predictor:
            with timer.stage("prompt_predictor"):
                maps = self.backend.predict_prompts(encoded, tensor)
        return EncodedFrame(tensor, geometry, encoded, maps, dict(timer.ms))

    def segment(
        self,
        frame: EncodedFrame,
        prompts: PromptSet | None = None,
        timer: _Timer | None = None,
        auto: bool | None = None,
    ) -> Segmentation:
        """Segment an encoded frame.

        Args:
            frame: Output of :meth:`encode`.
            prompts: Given prompts (source pixels), or None.
            timer: Stage timer to add to.
            auto: Also use automatic prompts. Defaults to ``prompts is None``; with given
                prompts too ("hybrid"), the given ones are decoded first and automatic
                candidates inside their masks are dropped.
        """
        timer = timer or _Timer()
        auto = prompts is None if auto is None else auto
        candidates, decoded = Candidates.empty(), Decoded()
        if prompts is not None:
            with timer.stage("decoder"):
                candidates, decoded = decode_given(
                    self.backend, self.cfg, frame.encoded, frame.geometry, prompts
                )
        given = len(candidates)
        regions = auto and self.panoptic and self.cfg.thing_masks == "regions"
        if auto and not regions:
            with timer.stage("prompts"):
                found, region_boxes = self._auto_candidates(frame)
                found = self._outside(found, decoded)
            with timer.stage("decoder"):
                auto_masks = self._decode_auto(frame, found, region_boxes)
                decoded = decoded.followed_by(auto_masks, given)
                candidates = Candidates.concat(candidates, found)
        with timer.stage("postprocess"):
            result = self._assemble(frame, candidates, decoded, given)
            if self.panoptic:
                dense, confidence = panoptic.dense_classes(
                    frame.encoded.semantic[0], frame.geometry
                )
                if regions:  # things straight from the class map, outside given masks
                    result.instances += self._regions(result, dense, confidence)
                panoptic.make_panoptic(result, dense, self.things, self.cfg.min_area)
            else:  # panoptic mode paints its own maps from the class map
                _paint_maps(result)
                if self.cfg.fill_semantic:
                    result.semantic = self.dense_semantic(frame, result.semantic)
        result.candidates = len(candidates)
        result.active_rank = frame.encoded.active_rank
        result.layer_ranks = dict(frame.encoded.layer_ranks)
        result.timings_ms = {**(frame.timings_ms or {}), **timer.ms}
        return result

    def _regions(
        self, result: Segmentation, dense: np.ndarray, confidence: np.ndarray
    ) -> list[Instance]:
        """Thing regions of the class map as instances, outside the (class-cut) given masks."""
        held = np.zeros(dense.shape, bool)
        for inst in result.instances:
            held |= inst.mask & (dense == inst.class_id)
        found = panoptic.region_instances(
            dense, confidence, self.things, self.class_names, self.cfg.min_area, free=~held
        )
        found = [inst for inst in found if inst.score >= self.cfg.score_threshold]
        return found[: max(self.cfg.max_instances - len(result.instances), 0)]

    def needs_prompt_maps(self, auto: bool) -> bool:
        """Whether a frame needs the prompt predictor.

        It does for automatic prompts (unless the class map makes or seeds things), and to name
        masks when the model has no semantic head.
        """
        info = self.backend.info
        if auto and not self._predictor_free:
            return True
        return bool(self.class_names) and not info.semantic_head

    @property
    def _semantic_seeds(self) -> bool:
        """Thing prompts come from the semantic head's class map, not the prompt predictor."""
        return bool(self.panoptic) and self.cfg.thing_prompts != "predictor"

    @property
    def _predictor_free(self) -> bool:
        """Automatic output needs no prompt predictor: the class map seeds or makes things."""
        return self._semantic_seeds or (bool(self.panoptic) and self.cfg.thing_masks == "regions")

    def _auto_candidates(self, frame: EncodedFrame) -> tuple[Candidates, np.ndarray | None]:
        """Automatic prompts: peaks of the prompt predictor's or the class map's maps.

        Returns:
            The candidates, and with ``thing_prompts: box`` the ``(G, G, 4)`` map of region
            boxes (cells) to prompt each candidate with instead of its point.
        """
        info, cfg = self.backend.info, self.cfg.prompts
        if self._semantic_seeds:
            probs = frame.encoded.semantic[0]
            factor = max(1, round(probs.shape[-1] * CONFIDENCE_CELL / info.input_size))
            confidence, boxes = panoptic.thing_centres(probs, self.things, factor)
            # No prompts in the padding.
            confidence = panoptic.inside_image(confidence, frame.geometry)
            cfg = replace(cfg, smoothing_sigma=0.0)  # already a distance map: no smoothing
            found = find_peaks(confidence, cfg, frame.geometry.input_size)
            if self.cfg.thing_prompts != "box":
                return found, None
            return panoptic.one_per_box(found, boxes, info.input_size), boxes
        if frame.maps is None:
            raise RuntimeError(
                f"frame encoded without prompt maps (model {info.model_id}: prompt predictor "
                f"{'present' if info.prompt_predictor else 'absent'})"
            )
        confidence = frame.maps.confidence
        if self.panoptic:  # stuff comes from the class map: prompts only for things
            confidence = panoptic.thing_confidence(confidence, self.things)
        return find_peaks(confidence, cfg, frame.geometry.input_size), None

    def dense_semantic(self, frame: EncodedFrame, semantic: np.ndarray) -> np.ndarray:
        """``semantic`` with uncovered pixels given the prompt predictor's most likely class.

        Returned unchanged when the frame has no predictor maps.
        """
        class_probs = _class_probs(frame)
        if class_probs is None:
            return semantic
        return fill_unassigned(semantic, class_probs, frame.geometry, UNASSIGNED)

    def _outside(self, found: Candidates, decoded: Decoded) -> Candidates:
        """Automatic candidates not inside a mask of a given prompt."""
        if not decoded.accepted or not len(found):
            return found
        info = self.backend.info
        cells = np.clip(
            (found.xy * info.mask_size / info.input_size).astype(np.int64), 0, info.mask_size - 1
        )
        covered = np.any([m.mask[cells[:, 1], cells[:, 0]] for m in decoded.accepted], axis=0)
        return found.subset(np.flatnonzero(~covered))

    def _decode_auto(
        self, frame: EncodedFrame, candidates: Candidates, region_boxes: np.ndarray | None
    ) -> Decoded:
        """Decode automatic candidates: a click each, or the box of the region it lies in."""
        cfg, info = self.cfg.prompts, self.backend.info
        features = None
        if cfg.elimination_threshold > 0:
            emb = frame.encoded.embedding[0]
            features = emb / (np.linalg.norm(emb, axis=0, keepdims=True) + 1e-6)

        def decode(xy: np.ndarray):
            if region_boxes is not None:
                coords, labels = panoptic.region_box_prompts(region_boxes, xy, info.input_size)
                return self.backend.decode(frame.encoded, coords, labels, multimask=False)
            coords = xy[:, None, :].astype(np.float32)
            labels = np.ones((len(xy), 1), np.float32)
            return self.backend.decode(frame.encoded, coords, labels, multimask=cfg.multimask)

        return decode_with_deletion(
            candidates,
            decode,
            cfg,
            info.mask_size,
            info.input_size,
            features,
            self.cfg.mask_threshold,
        )

    def _assemble(
        self, frame: EncodedFrame, candidates: Candidates, decoded: Decoded, given: int
    ) -> Segmentation:
        cfg, geometry = self.cfg, frame.geometry
        result = Segmentation.empty(geometry.source_hw)
        accepted = decoded.accepted
        used = np.asarray([m.prompt_index for m in accepted], np.int64)
        tried = np.asarray(decoded.tried, np.int64)
        result.prompts_xy = (
            geometry.to_source(candidates.xy[tried]) if len(tried) else np.zeros((0, 2))
        )
        result.prompt_classes = candidates.classes[tried]
        result.prompt_scores = candidates.scores[tried]
        if not len(used):
            return result
        pred_iou = np.asarray([m.pred_iou for m in accepted], np.float32)
        scores = pred_iou * candidates.scores[used]
        keep = mask_nms(np.stack([m.mask for m in accepted]), scores, cfg.nms_iou)
        result.duplicates = len(used) - len(keep)
        keep = keep[scores[keep] >= cfg.score_threshold][: cfg.max_instances]
        if not len(keep):
            return result
        logits = np.stack([accepted[i].logits for i in keep])
        boxes = [accepted[i].box for i in keep]
        clip = box_array(boxes) if cfg.clip_to_box else None
        masks = upscale_masks(logits, geometry, logit_cuts(self.cfg, boxes), clip)
        classes = self._classes(frame, candidates.classes[used[keep]], logits, used[keep] < given)
        instances = []
        for order, i in enumerate(keep):
            mask = masks[order]
            area = int(mask.sum())
            if area < max(cfg.min_area, 1):
                continue
            ys, xs = np.nonzero(mask.any(axis=1))[0], np.nonzero(mask.any(axis=0))[0]
            prompt = geometry.to_source(candidates.xy[used[i]][None])[0]
            class_id = int(classes[order])
            instances.append(
                Instance(
                    instance_id=len(instances) + 1,
                    class_id=class_id,
                    class_name=self.class_names[class_id]
                    if 0 <= class_id < len(self.class_names)
                    else "",
                    score=float(scores[i]),
                    predicted_iou=float(pred_iou[i]),
                    box=(int(xs[0]), int(ys[0]), int(xs[-1]), int(ys[-1])),
                    area=area,
                    mask=mask,
                    prompt_xy=(float(prompt[0]), float(prompt[1])),
                    prompt_score=float(candidates.scores[used[i]]),
                    prompt_index=int(used[i]),
                    prompt_given=bool(used[i] < given),
                )
            )
        result.instances = instances
        return result

    def _classes(
        self,
        frame: EncodedFrame,
        prompt_classes: np.ndarray,
        logits: np.ndarray,
        given_rows: np.ndarray,
    ) -> np.ndarray:
        """Class per kept mask: the prompt's, or the class probabilities pooled over the mask.

        ``given_rows`` marks masks of given prompts; in panoptic mode the others came from
        thing maps and are named among the thing classes.
        """
        class_probs = _class_probs(frame)
        if self.cfg.prompts.class_source == "prompt" or class_probs is None:
            return prompt_classes
        weights = soft_mask_weights(logits, grid=class_probs.shape[-1])
        pooled = pool_class_probs(weights, class_probs)
        if self.panoptic:  # automatic prompts came from thing maps: name them among things
            auto = ~given_rows
            classes = np.argmax(pooled, axis=1)
            classes[auto] = panoptic.thing_class(pooled[auto], self.things)
            return classes
        return np.argmax(pooled, axis=1)


def _paint_maps(result: Segmentation) -> None:
    """Paint the instance-id and class maps of ``result`` from its instances, best on top."""
    instances = result.instances
    if not instances:
        return
    stack = np.stack([inst.mask for inst in instances])
    order_scores = np.asarray([inst.score for inst in instances])
    ids = np.arange(1, len(instances) + 1)
    result.instance_ids = paint_labels(stack, order_scores, ids, 0, np.uint16)
    known = np.asarray([inst.class_id for inst in instances])
    valid = known >= 0
    if valid.any():
        result.semantic = paint_labels(
            stack[valid], order_scores[valid], known[valid], UNASSIGNED, np.uint8
        )


def _class_probs(frame: EncodedFrame) -> np.ndarray | None:
    """Class probabilities ``(C, G, G)`` that name masks and fill holes.

    The semantic head's when the model has one, else the prompt predictor's (None without
    either).
    """
    if frame.encoded.semantic is not None:
        return frame.encoded.semantic[0]
    return None if frame.maps is None else frame.maps.class_probs
