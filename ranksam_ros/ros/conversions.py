"""Results and prompts as ROS 2 messages: masks, label, panoptic and task images, prompts in.

Incoming camera frames are :mod:`ranksam_ros.ros.image_input`'s. These modules and the node
are the only places that import message types, so the rest of the package runs without ROS.

Sequence fields are assigned as ``array.array`` and fixed arrays as ``numpy`` arrays: Humble's
generated setters (and Jazzy's with ``ROS_PYTHON_CHECK_FIELDS=1``) check a list or ``bytes``
element by element in Python, which costs tens of milliseconds per image.
"""

from __future__ import annotations

import array
import math
import time
from collections.abc import Mapping

import numpy as np
from geometry_msgs.msg import Point, Vector3
from ranksam_msgs.msg import MaskInstance, Prompt, PromptArray, SegmentationMasks, StageTiming
from sensor_msgs.msg import Image, RegionOfInterest
from std_msgs.msg import Header

from ranksam_ros.graph.preprocess import ResizeInfo
from ranksam_ros.pipeline.postprocess import decode_rle, encode_rle, upscale_logits
from ranksam_ros.pipeline.result import Instance, Segmentation
from ranksam_ros.ros.image_input import gather_channels

# Pipeline stage names (and node-side ones) -> StageTiming fields; repeated targets are summed.
_TIMING_FIELDS = {
    "conversion": "conversion_ms",
    "decode": "conversion_ms",
    "preprocess": "preprocess_ms",
    "encoder": "encoder_ms",
    "prompt": "prompt_ms",
    "prompts": "prompt_ms",
    "prompt_predictor": "prompt_ms",
    "decoder": "decoder_ms",
    "postprocess": "postprocess_ms",
    "message": "message_ms",
    "total": "total_ms",
    "tracking": "tracking_ms",
    "depth": "depth_ms",
}


def _byte_array(values: np.ndarray) -> array.array:
    """The raw bytes of ``values`` as ``array.array('B')`` (one copy, no per-element checks)."""
    out = array.array("B")
    out.frombytes(np.ascontiguousarray(values).reshape(-1).view(np.uint8).data)
    return out


def rgb_to_image(rgb: np.ndarray, header: Header, encoding: str = "rgb8") -> Image:
    """RGB frame -> raw ``sensor_msgs/Image``.

    Args:
        rgb: ``(H, W, 3)`` uint8.
        header: Copied into the message (stamp and frame_id of the source).
        encoding: ``"rgb8"`` or ``"bgr8"``.

    Returns:
        An unpadded image message (``step = 3 * W``).
    """
    if rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.dtype != np.uint8:
        raise ValueError(f"expected (H, W, 3) uint8, got {rgb.shape} {rgb.dtype}")
    if encoding not in ("rgb8", "bgr8"):
        raise ValueError(f"encoding must be rgb8 or bgr8, got {encoding!r}")
    height, width = rgb.shape[:2]
    pixels = gather_channels(rgb, (2, 1, 0)) if encoding == "bgr8" else rgb
    msg = Image(header=header, height=height, width=width, encoding=encoding, step=3 * width)
    msg.data = _byte_array(pixels)
    return msg


def label_image(labels: np.ndarray, header: Header) -> Image:
    """Label map -> ``mono16`` (uint16) or ``mono8`` (uint8) little-endian image.

    Args:
        labels: ``(H, W)`` uint16 (instance ids) or uint8 (class ids).
        header: Copied into the message.
    """
    if labels.ndim != 2 or labels.dtype not in (np.uint8, np.uint16):
        raise ValueError(f"expected (H, W) uint8 or uint16, got {labels.shape} {labels.dtype}")
    height, width = labels.shape
    size = labels.dtype.itemsize
    msg = Image(header=header, height=height, width=width, step=size * width, is_bigendian=0)
    msg.encoding = "mono16" if size == 2 else "mono8"
    msg.data = _byte_array(labels.astype("<u2" if size == 2 else np.uint8, copy=False))
    return msg


def panoptic_image(panoptic: np.ndarray, header: Header) -> Image:
    """Panoptic map ``(H, W)`` int32 (``class * 1000 + instance id``) -> ``32SC1`` image.

    ``class = value // 1000`` and ``instance = value % 1000`` (Cityscapes' encoding; stuff
    pixels have instance 0); little-endian.
    """
    if panoptic.ndim != 2 or panoptic.dtype != np.int32:
        raise ValueError(f"expected (H, W) int32, got {panoptic.shape} {panoptic.dtype}")
    height, width = panoptic.shape
    msg = Image(header=header, height=height, width=width, step=4 * width, is_bigendian=0)
    msg.encoding = "32SC1"
    msg.data = _byte_array(panoptic.astype("<i4", copy=False))
    return msg


def task_image(task: str, values: np.ndarray, geometry: ResizeInfo, header: Header) -> Image:
    """One task's output ``(C, m, m)`` on the mask grid -> an image of the source frame.

    ``semantic``: mono8 class ids (arg-max); ``boundary``: 32FC1 probability; ``centre``:
    32FC3 instance-centre probability and the offset (x, y) to the centre in source pixels.
    """
    upscaled = upscale_logits(values.astype(np.float32), geometry)
    height, width = geometry.source_hw
    if task == "semantic":
        return label_image(np.argmax(upscaled, axis=0).astype(np.uint8), header)
    if task == "centre":
        cell = geometry.input_size / values.shape[-1]  # input pixels per mask cell
        sx, sy = geometry.scale_xy
        upscaled[1] *= cell / sx
        upscaled[2] *= cell / sy
    channels = upscaled.shape[0]
    msg = Image(header=header, height=height, width=width, is_bigendian=0)
    msg.encoding, msg.step = f"32FC{channels}", 4 * channels * width
    msg.data = _byte_array(np.ascontiguousarray(np.moveaxis(upscaled, 0, -1)).astype("<f4"))
    return msg


def _mask_roi(mask: np.ndarray) -> tuple[int, int, int, int]:
    """Tight ``(x, y, width, height)`` box of a bool mask; zeros for an empty mask."""
    rows, cols = np.flatnonzero(mask.any(axis=1)), np.flatnonzero(mask.any(axis=0))
    if not len(rows):
        return 0, 0, 0, 0
    return int(cols[0]), int(rows[0]), int(cols[-1] - cols[0] + 1), int(rows[-1] - rows[0] + 1)


def prompt_set_order(prompts: list[Prompt]) -> list[Prompt]:
    """Given prompts in ``PromptSet`` order: points first, then boxes.

    :func:`prompts_from_msg` hands them to the pipeline in this order, so an instance's
    ``prompt_index`` indexes this list.
    """
    points = [p for p in prompts if p.type == Prompt.POINT]
    return points + [p for p in prompts if p.type == Prompt.BOX]


def _instance_msg(inst: Instance, given: list[Prompt]) -> MaskInstance:
    if not 0 <= inst.instance_id <= 0xFFFF:
        raise ValueError(f"instance_id {inst.instance_id} does not fit uint16")
    x, y, width, height = _mask_roi(inst.mask)
    crop = inst.mask[y : y + height, x : x + width]
    class_id = int(np.clip(inst.class_id, -1, 0x7FFF))
    prompt = given[inst.prompt_index] if inst.prompt_given else None
    if prompt is None:  # automatic prompt: a point at the peak the predictor found
        prompt = Prompt(type=Prompt.POINT, x=float(inst.prompt_xy[0]), y=float(inst.prompt_xy[1]))
        prompt.class_id, prompt.score = class_id, float(inst.prompt_score)
    msg = MaskInstance(
        instance_id=int(inst.instance_id),
        class_id=class_id,
        class_name=inst.class_name,
        score=float(inst.score),
        predicted_iou=float(inst.predicted_iou),
        roi=RegionOfInterest(x_offset=x, y_offset=y, width=width, height=height),
        area=int(np.count_nonzero(crop)),
        prompt=prompt,
        track_id=int(inst.track_id),
        position=Point(**dict(zip("xyz", map(float, inst.position)))),
        extent=Vector3(**dict(zip("xyz", map(float, inst.extent)))),
        depth_valid_ratio=float(inst.depth_valid_ratio),
    )
    msg.rle_counts = array.array("I", encode_rle(crop))
    return msg


def _stage_names(times_ms: Mapping[str, float]) -> dict[str, float]:
    return {name.removesuffix("_ms"): float(value) for name, value in times_ms.items()}


def _stage_timing(times_ms: Mapping[str, float]) -> StageTiming:
    fields: dict[str, float] = {}
    for name, value in times_ms.items():
        target = _TIMING_FIELDS.get(name)
        if target is not None:  # other stages (e.g. a backend's sub-steps) are not reported
            fields[target] = fields.get(target, 0.0) + value
    return StageTiming(**fields)


def segmentation_to_msg(
    seg: Segmentation,
    header: Header,
    model_id: str,
    prompt_source: int,
    timing: Mapping[str, float],
    frames_dropped: int,
    prompts: PromptArray | None = None,
    depth_stamp_ns: int = 0,
) -> SegmentationMasks:
    """Pipeline result -> ``SegmentationMasks`` with one ROI-cropped RLE per instance.

    Args:
        seg: The frame's result; instance masks are ``(H, W)`` bool in source pixels.
        header: The source image's header (stamp and frame_id are kept).
        model_id: Model, adapter and backend identifier.
        prompt_source: One of ``SegmentationMasks.PROMPT_*``.
        timing: Node-side stage times in ms (``conversion``, ``total``, ...; an ``_ms`` suffix
            is accepted) added over ``seg.timings_ms``. ``message`` defaults to the time
            spent here.
        frames_dropped: Input frames dropped since the previous output.
        prompts: The external prompts given for this frame, echoed (with their ids) in the
            instances they produced; ``None`` for automatic prompts.
        depth_stamp_ns: Stamp of the depth image paired with the frame (0 = none).

    Returns:
        The message; instances keep ``seg``'s order (best score first).
    """
    start = time.perf_counter()
    height, width = seg.source_hw
    given = prompt_set_order(list(prompts.prompts)) if prompts is not None else []
    msg = SegmentationMasks(header=header, model_id=model_id, prompt_source=int(prompt_source))
    msg.source_width, msg.source_height = int(width), int(height)
    msg.mask_width, msg.mask_height = int(width), int(height)
    msg.instances = [_instance_msg(inst, given) for inst in seg.instances]
    msg.frames_dropped = int(frames_dropped)
    msg.prompts_decoded, msg.prompt_candidates = int(seg.prompts_decoded), int(seg.candidates)
    msg.mean_active_rank = math.nan if seg.active_rank is None else float(seg.active_rank)
    msg.depth_stamp.sec, msg.depth_stamp.nanosec = divmod(int(depth_stamp_ns), 1_000_000_000)
    times = {**_stage_names(seg.timings_ms), **_stage_names(timing)}
    times.setdefault("message", (time.perf_counter() - start) * 1000.0)
    msg.timing = _stage_timing(times)
    return msg


def msg_instance_mask(inst_msg: MaskInstance, height: int, width: int) -> np.ndarray:
    """Decode one ``MaskInstance`` back to a full-size mask.

    Args:
        inst_msg: The instance (its ``roi`` and ``rle_counts``).
        height: Mask grid height (``SegmentationMasks.mask_height``).
        width: Mask grid width.

    Returns:
        ``(height, width)`` bool.

    Raises:
        ValueError: The ROI leaves the grid or the counts do not fill the ROI.
    """
    roi = inst_msg.roi
    x, y, roi_w, roi_h = int(roi.x_offset), int(roi.y_offset), int(roi.width), int(roi.height)
    if x + roi_w > width or y + roi_h > height:
        raise ValueError(f"roi {roi_w}x{roi_h}+{x}+{y} leaves the {width}x{height} mask grid")
    mask = np.zeros((height, width), bool)
    if roi_w and roi_h:
        mask[y : y + roi_h, x : x + roi_w] = decode_rle(inst_msg.rle_counts, roi_h, roi_w)
    elif len(inst_msg.rle_counts):
        raise ValueError("an empty roi must have no rle_counts")
    return mask


def prompts_from_msg(msg: PromptArray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``PromptArray`` -> arrays for ``PromptSet(points, boxes, classes)``.

    Args:
        msg: Prompts in source pixels.

    Returns:
        ``points`` ``(N, 2)`` float32 (x, y); ``boxes`` ``(M, 4)`` float32 (x0, y0, x1, y1);
        ``classes`` ``(N + M,)`` int64, points first then boxes (the ``PromptSet`` order),
        -1 = unknown.

    Raises:
        ValueError: Unknown prompt type, non-finite coordinates or an inverted box.
    """
    points, boxes, point_classes, box_classes = [], [], [], []
    for index, prompt in enumerate(msg.prompts):
        if prompt.type == Prompt.POINT:
            points.append((prompt.x, prompt.y))
            point_classes.append(prompt.class_id)
        elif prompt.type == Prompt.BOX:
            box = tuple(float(v) for v in prompt.box)
            if box[2] < box[0] or box[3] < box[1]:
                raise ValueError(f"prompt {index}: box {box} has x1 < x0 or y1 < y0")
            boxes.append(box)
            box_classes.append(prompt.class_id)
        else:
            raise ValueError(f"prompt {index}: unknown type {prompt.type} (POINT=0, BOX=1)")
    points_xy = np.asarray(points, np.float32).reshape(-1, 2)
    boxes_xyxy = np.asarray(boxes, np.float32).reshape(-1, 4)
    if not (np.isfinite(points_xy).all() and np.isfinite(boxes_xyxy).all()):
        raise ValueError("prompt coordinates must be finite")
    return points_xy, boxes_xyxy, np.asarray(point_classes + box_classes, np.int64)
