"""Regenerate the foundation section of docs/results.md: box-prompt IoU on clean CamVid val
against the filled box itself, overall, on large segments and per class; also with the box
masks cut at logit 0 instead of the tuned ``box_mask_threshold``, and with flip test-time
augmentation.

    python scripts/results_foundation.py --data ../shared/data/camvid/val
"""

from __future__ import annotations

import argparse
import dataclasses
import time
from pathlib import Path

from ranksam_ros.config import PipelineConfig
from ranksam_ros.eval.evaluate import evaluate
from ranksam_ros.eval.options import EvalOptions
from ranksam_ros.reporting import machine_description, update_section, write_json

ROOT = Path(__file__).resolve().parents[1]


def summary(report: dict) -> dict:
    """The headline numbers of a variant run."""
    keys = ("miou", "miou_large", "seconds_per_image", "tta", "model")
    return {k: report[k] for k in keys}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0], allow_abbrev=False)
    parser.add_argument("--data", required=True)
    parser.add_argument("--model", default="camvid-tiny")
    parser.add_argument("--limit", type=int, default=0)
    parser.add_argument("--docs", default=str(ROOT / "docs"))
    args = parser.parse_args()
    started = time.perf_counter()
    options = EvalOptions(model=args.model, data=args.data, limit=args.limit, threads=2)
    report = evaluate(options)
    raw = evaluate(dataclasses.replace(options, pipeline_overrides=("box_mask_threshold=0.0",)))
    flip = evaluate(dataclasses.replace(options, tta="flip"))
    cut = PipelineConfig().box_mask_threshold
    docs = Path(args.docs)
    write_json(
        docs / "results" / "foundation.json",
        {**report, "box_mask_threshold_0": summary(raw), "flip_tta": summary(flip)},
        relative_to=ROOT,
    )
    rows = [
        "| | all segments | large (>= 1000 px) |",
        "|---|---|---|",
        f"| foundation, box prompt (mask clipped to the box, the default) | **{report['miou']:.3f}** | **{report['miou_large']:.3f}** |",
        f"| foundation, box prompt, mask not clipped | {report['miou_unclipped']:.3f} | {report['miou_large_unclipped']:.3f} |",
        f"| foundation, box prompt, cut at logit 0 instead of {cut:+g} (`--set box_mask_threshold=0`) | {raw['miou']:.3f} | {raw['miou_large']:.3f} |",
        f"| foundation, box prompt, flip test-time augmentation (`--tta flip`, {flip['seconds_per_image'] / report['seconds_per_image']:.1f}x the time) | {flip['miou']:.3f} | {flip['miou_large']:.3f} |",
        f"| filled box (baseline) | {report['box_baseline_miou']:.3f} | {report['box_baseline_miou_large']:.3f} |",
    ]
    classes = " | ".join(report["class_iou"])
    values = " | ".join(f"{v:.3f}" for v in report["class_iou"].values())
    body = (
        f"`{report['model']}` on clean CamVid val: {report['images']} frames, {report['segments']} segments "
        f"({report['segments_large']} large), mean IoU at source resolution. Command: "
        f"`python scripts/results_foundation.py --data <camvid>/val` "
        f"({(time.perf_counter() - started) / 60:.1f} min, {report['seconds_per_image']:.3f} s/frame on "
        f"{machine_description()}).\n\n"
        + "\n".join(rows)
        + f"\n\nPer class (mean segment IoU, clipped):\n\n| {classes} |\n|"
        + "---|" * len(report["class_iou"])
        + f"\n| {values} |\n"
    )
    update_section(docs / "results.md", "foundation", body)
    print(body)


if __name__ == "__main__":
    main()
