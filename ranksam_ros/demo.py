"""``ranksam demo``: promptless segmentation of the bundled CamVid frames, written as pictures.

Works on a fresh clone: the frames and the default model ship inside the package.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from PIL import Image

from ranksam_ros.config import PipelineConfig
from ranksam_ros.data.folder import SegmentationFolder

BUNDLED_FRAMES = Path(__file__).resolve().parent / "assets" / "camvid_val"


def run_demo(
    out_dir: str | Path = "out/demo",
    model: str = "camvid-tiny",
    adapter: str = "gated",
    frames: str | Path = BUNDLED_FRAMES,
    backend: str = "torch",
) -> dict:
    """Segment every bundled frame, write overlays and a contact sheet, return a summary.

    Args:
        out_dir: Output folder (created).
        model: Model name or path (needs a prompt predictor).
        adapter: Adapter name or ``none``.
        frames: Folder with ``images/`` (and optionally ``labels/`` for a score).
        backend: Inference engine.

    Returns:
        Summary with per-frame instance counts, timings and (with labels) semantic mIoU.
    """
    from ranksam_ros.backends import create_backend
    from ranksam_ros.pipeline.overlay import contact_sheet, draw_overlay
    from ranksam_ros.pipeline.pipeline import Pipeline
    from ranksam_ros.train.evaluate_auto import ConfusionMatrix

    out = Path(out_dir)
    (out / "overlays").mkdir(parents=True, exist_ok=True)
    folder = SegmentationFolder(frames, require_labels=False)
    pipeline = Pipeline(create_backend(backend, model, adapter), PipelineConfig())
    confusion, sheet, frames_summary = ConfusionMatrix(), [], []
    for index in range(len(folder)):
        image, label = folder[index]
        result = pipeline(image)
        overlay = draw_overlay(image, result)
        Image.fromarray(overlay).save(out / "overlays" / f"{folder.name(index)}.png")
        sheet.append(overlay)
        if label is not None:
            confusion.add(np.where(label >= confusion.num_classes, 255, label), result.semantic)
        frames_summary.append(
            {
                "frame": folder.name(index),
                "instances": len(result.instances),
                "prompts_decoded": result.prompts_decoded,
                "candidates": result.candidates,
                "classes": sorted({inst.class_name for inst in result.instances}),
                "active_rank": result.active_rank,
                "total_ms": round(sum(result.timings_ms.values()), 1),
            }
        )
        print(
            f"{folder.name(index)}: {len(result.instances):2d} instances from "
            f"{result.prompts_decoded:2d} prompts ({result.candidates} candidates), "
            f"{frames_summary[-1]['total_ms']:.0f} ms"
        )
    Image.fromarray(contact_sheet(sheet[:9])).save(out / "contact_sheet.png")
    summary = {
        "model": pipeline.backend.info.model_id,
        "frames": frames_summary,
        "median_ms": float(np.median([f["total_ms"] for f in frames_summary])),
    }
    if confusion.matrix.sum():
        summary["semantic_miou"] = float(np.nanmean(confusion.class_iou()))
    (out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    print(f"wrote {out}/overlays/*.png, {out}/contact_sheet.png, {out}/summary.json")
    if "semantic_miou" in summary:
        print(f"semantic mIoU on these frames: {summary['semantic_miou']:.3f}")
    return summary
