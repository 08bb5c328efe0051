"""Regenerate the automatic-prompt section of docs/results.md: our prompt predictor with
redundant-prompt deletion vs SAM's 32x32 grid generator on the same model, one run side by
side, plus the deletion ablation and a figure of val frames.

    python scripts/results_prompts.py --data ../shared/data/camvid/val
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
from PIL import Image

from ranksam_ros.backends.torch_backend import TorchBackend
from ranksam_ros.config import PipelineConfig, PromptConfig
from ranksam_ros.data.folder import SegmentationFolder
from ranksam_ros.eval.options import EvalOptions
from ranksam_ros.eval.promptless import evaluate_promptless
from ranksam_ros.modeling.registry import build_model
from ranksam_ros.pipeline.overlay import colorize_labels, contact_sheet, draw_overlay
from ranksam_ros.pipeline.pipeline import Pipeline
from ranksam_ros.reporting import machine_description, update_section, write_json

ROOT = Path(__file__).resolve().parents[1]
FIGURE_FRAMES = (0, 25, 50, 75)


def figure(model: str, adapter: str, data: str, path: Path) -> None:
    """Rows of (frame with prompts and masks, predicted classes, ground truth)."""
    folder = SegmentationFolder(data)
    pipeline = Pipeline(TorchBackend(build_model(model, adapter=adapter), threads=2))
    tiles = []
    for index in FIGURE_FRAMES:
        if index >= len(folder):
            continue
        image, label = folder[index]
        result = pipeline(image)
        truth = np.where(label == 11, 255, label)
        tiles += [
            draw_overlay(image, result),
            colorize_labels(result.semantic),
            colorize_labels(truth),
        ]
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(contact_sheet(tiles, columns=3)).save(path)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0], allow_abbrev=False)
    parser.add_argument("--data", required=True)
    parser.add_argument("--model", default="camvid-tiny")
    parser.add_argument("--adapter", default="none")
    parser.add_argument("--limit", type=int, default=0)
    parser.add_argument("--docs", default=str(ROOT / "docs"))
    args = parser.parse_args()
    base = dict(model=args.model, data=args.data, adapter=args.adapter, limit=args.limit, threads=2)
    reports = {}
    started = time.perf_counter()
    # Instances mode: prompts for every class, as the grid decodes every class, so the
    # comparison isolates prompt selection (both name masks with the same class map).
    reports["auto"] = evaluate_promptless(
        EvalOptions(prompts="auto", **base), pipeline_cfg=PipelineConfig(mode="instances")
    )
    no_delete = PipelineConfig(prompts=PromptConfig(delete_redundant=False), mode="instances")
    reports["auto_no_deletion"] = evaluate_promptless(
        EvalOptions(prompts="auto", **base), pipeline_cfg=no_delete
    )
    reports["grid"] = evaluate_promptless(EvalOptions(prompts="grid", **base))
    minutes = (time.perf_counter() - started) / 60
    docs = Path(args.docs)
    write_json(docs / "results" / "prompts.json", reports)
    figure(args.model, args.adapter, args.data, docs / "figures" / "prompts_examples.png")
    auto, grid, off = reports["auto"], reports["grid"], reports["auto_no_deletion"]
    rows = [
        "| prompts | semantic mIoU (dense) | masks only | prompts decoded / frame | duplicates / frame | s / frame |",
        "|---|---|---|---|---|---|",
        f"| SAM grid 32x32 (`SamAutomaticMaskGenerator`) | {100 * grid['miou_filled']:.2f} | {100 * grid['miou_masks_only']:.2f} | {grid['prompts_per_image']:.0f} | – | {grid['seconds_per_image']:.2f} |",
        f"| ours, with deletion | {100 * auto['miou_filled']:.2f} | {100 * auto['miou_masks_only']:.2f} | {auto['prompts_per_image']:.1f} | {auto['duplicates_per_image']:.2f} | {auto['seconds_per_image']:.3f} |",
        f"| ours, deletion off | {100 * off['miou_filled']:.2f} | {100 * off['miou_masks_only']:.2f} | {off['prompts_per_image']:.1f} | {off['duplicates_per_image']:.2f} | {off['seconds_per_image']:.3f} |",
    ]
    ratios = (
        f"Ratios (ours with deletion vs grid): {grid['prompts_per_image'] / auto['prompts_per_image']:.1f}x fewer "
        f"prompts decoded, mIoU {100 * (auto['miou_filled'] - grid['miou_filled']):+.2f} points dense / "
        f"{100 * (auto['miou_masks_only'] - grid['miou_masks_only']):+.2f} masks only, end-to-end time "
        f"{auto['seconds_per_image'] / grid['seconds_per_image']:.3f}x the grid's."
    )
    classes = " | ".join(auto["class_iou"])
    body = (
        f"Promptless semantic segmentation of CamVid val ({auto['images']} frames, 11 classes, label 11 "
        f"ignored), model `{auto['model']}`, both methods naming masks with the same mask-pooled class "
        f"probabilities. *Dense*: pixels no mask covers take the prompt predictor's most likely class "
        f"(`fill_semantic`, the default, what the node publishes on `~/semantic`); *masks only*: they "
        f"count as misses, which isolates the masks themselves. Command: `python scripts/results_prompts.py --data "
        f'<camvid>/val` ({minutes:.0f} min on {machine_description()}). "Duplicates" are decoded masks '
        f"with IoU > 0.7 to a better one (removed by the final NMS).\n\n"
        + "\n".join(rows)
        + f"\n\n{ratios}\n\n"
        f"Per-class IoU, ours: | {classes} |\n|"
        + "---|" * len(auto["class_iou"])
        + "\n| "
        + " | ".join(f"{100 * v:.1f}" for v in auto["class_iou"].values())
        + " |\n\n"
        "![val frames: prompts and masks, predicted classes, ground truth](figures/prompts_examples.png)\n"
    )
    update_section(docs / "results.md", "prompts", body)
    print(body)


if __name__ == "__main__":
    main()
