"""``ranksam bench --offline``: the bag's frames through :class:`Pipeline` in this process.

This is the model-only reference for the live numbers (no DDS, no message building) and, when
the bag carries label images with the camera's stamps, a semantic mIoU of the same frames.
"""

from __future__ import annotations

import io
import time
from collections.abc import Callable

import numpy as np
from PIL import Image as PILImage

from ranksam_ros.bench.bags import COMPRESSED, IMAGE, BagError, BagFrames
from ranksam_ros.bench.metrics import percentiles
from ranksam_ros.bench.typestore import ranksam_typestore
from ranksam_ros.config import DataConfig
from ranksam_ros.node_config import NodeConfig


def decode_rgb(raw: bytes, msgtype: str) -> np.ndarray:
    """A serialised ``Image`` or JPEG/PNG ``CompressedImage`` -> ``(H, W, 3)`` uint8 RGB.

    Raw encodings: rgb8, bgr8, rgba8, bgra8 and mono8.
    """
    msg = ranksam_typestore().deserialize_cdr(raw, msgtype)
    if msgtype == COMPRESSED:
        with PILImage.open(io.BytesIO(msg.data.tobytes())) as image:
            return np.asarray(image.convert("RGB"))
    pixels = _pixels(msg)
    encoding = msg.encoding.lower()
    if encoding == "mono8":
        return np.repeat(pixels, 3, axis=2)
    if encoding in ("bgr8", "bgra8"):
        return np.ascontiguousarray(pixels[..., 2::-1])
    if encoding in ("rgb8", "rgba8"):
        return np.ascontiguousarray(pixels[..., :3])
    raise BagError(f"unsupported image encoding {msg.encoding!r}")


def decode_label(raw: bytes) -> np.ndarray:
    """A serialised mono8 label ``Image`` -> ``(H, W)`` uint8 class ids."""
    msg = ranksam_typestore().deserialize_cdr(raw, IMAGE)
    if msg.encoding.lower() != "mono8":
        raise BagError(f"label images must be mono8, got {msg.encoding!r}")
    return _pixels(msg)[..., 0]


def _pixels(msg) -> np.ndarray:
    channels = {"mono8": 1, "rgb8": 3, "bgr8": 3, "rgba8": 4, "bgra8": 4}.get(msg.encoding.lower())
    if channels is None:
        raise BagError(f"unsupported image encoding {msg.encoding!r}")
    rows = np.asarray(msg.data, np.uint8)[: msg.step * msg.height].reshape(msg.height, msg.step)
    return rows[:, : msg.width * channels].reshape(msg.height, msg.width, channels)


def _labels_by_frame(frames: BagFrames, labels: BagFrames) -> list[bytes | None]:
    """The label message of each frame: by header stamp, or by position without stamps."""
    if frames.stamp_report()["header_stamps"] == "present":
        by_stamp = dict(zip(labels.stamp_ns.tolist(), labels.raw))
        return [by_stamp.get(int(stamp)) for stamp in frames.stamp_ns]
    return [labels.raw[i] if i < len(labels) else None for i in range(len(frames))]


def run_offline(
    frames: BagFrames,
    cfg: NodeConfig,
    labels: BagFrames | None = None,
    on_result: Callable[[int, np.ndarray, object], None] | None = None,
) -> dict:
    """Segment every frame once (after one warm-up call) and time it.

    Args:
        frames: Camera frames (raw CDR).
        cfg: The node's configuration (model, adapter, backend, threads, pipeline).
        labels: Optional mono8 label frames; gives ``semantic_miou``.
        on_result: Called with ``(index, rgb, segmentation)`` for each frame (e.g. overlays).

    Returns:
        ``frames``, ``MODEL_TIME_MEDIAN``/``MODEL_TIME_P95`` (ms, wall time of the pipeline
        call), ``model_id`` and, with labels, ``semantic_miou`` and ``class_iou``.
    """
    from ranksam_ros.backends import create_backend
    from ranksam_ros.eval.confusion import ConfusionMatrix
    from ranksam_ros.pipeline.pipeline import Pipeline

    backend = create_backend(cfg.backend_config())
    pipeline = Pipeline(backend, cfg.pipeline)
    label_raw = _labels_by_frame(frames, labels) if labels is not None else []
    confusion = ConfusionMatrix(len(pipeline.class_names) or DataConfig().num_classes)
    times_ms: list[float] = []
    images = [decode_rgb(raw, frames.msgtype) for raw in frames.raw]
    pipeline(images[0])  # warm-up: first calls allocate and initialise
    for index, rgb in enumerate(images):
        start = time.perf_counter()
        result = pipeline(rgb)
        times_ms.append((time.perf_counter() - start) * 1000.0)
        if index < len(label_raw) and label_raw[index] is not None:
            truth = decode_label(label_raw[index])
            confusion.add(truth, result.semantic)
        if on_result is not None:
            on_result(index, rgb, result)
    median, p95 = percentiles(times_ms, (50, 95))
    report = {
        "frames": len(images),
        "model_id": backend.info.model_id,
        "MODEL_TIME_MEDIAN": median,
        "MODEL_TIME_P95": p95,
    }
    if confusion.matrix.sum():
        iou = confusion.class_iou()
        report["semantic_miou"] = float(np.nanmean(iou)) if np.isfinite(iou).any() else 0.0
        names = pipeline.class_names or tuple(str(i) for i in range(len(iou)))
        report["class_iou"] = {n: (None if np.isnan(v) else float(v)) for n, v in zip(names, iou)}
        report["labelled_frames"] = sum(raw is not None for raw in label_raw)
    return report
