"""Write the training-time section of docs/benchmarks.md from the runs of
scripts/build_camvid_conv.sh (reads each run's config.yaml and log.jsonl).

    python scripts/results_training.py --runs runs
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import yaml

from ranksam_ros.reporting import machine_description, update_section

ROOT = Path(__file__).resolve().parents[1]
STAGES = (
    "foundation",
    "prompt_predictor",
    "adapter_lora_r4",
    "adapter_lora_r8",
    "adapter_lora_r16",
    "adapter_gated",
    "decoder",
    "detail",
    "detail_joint",
    "detail_polish",
    "detail_polish2",
)


def summarize(run: Path) -> dict | None:
    log, config = run / "log.jsonl", run / "config.yaml"
    if not log.is_file() or not config.is_file():
        return None
    rows = [json.loads(line) for line in log.read_text().splitlines() if line.strip()]
    cfg = yaml.safe_load(config.read_text())
    last = rows[-1]
    world = 2 if run.name == "foundation" else 1
    images = last["step"] * cfg["optim"]["batch_size"] * world
    return {
        "steps": last["step"],
        "seconds": last["elapsed_s"],
        "s_per_step": last["elapsed_s"] / last["step"],
        "images_per_s": images / last["elapsed_s"],
        "batch": cfg["optim"]["batch_size"] * world,
        "processes": world,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0], allow_abbrev=False)
    parser.add_argument("--runs", default="runs")
    parser.add_argument("--docs", default=str(ROOT / "docs"))
    args = parser.parse_args()
    rows = [
        "| stage | steps | global batch | processes | wall min | s / step | images / s |",
        "|---|---|---|---|---|---|---|",
    ]
    total = 0.0
    for stage in STAGES:
        info = summarize(Path(args.runs) / stage)
        if info is None:
            continue
        total += info["seconds"]
        rows.append(
            f"| {stage} | {info['steps']} | {info['batch']} | {info['processes']} | {info['seconds'] / 60:.1f} | "
            f"{info['s_per_step']:.2f} | {info['images_per_s']:.1f} |"
        )
    body = (
        f"Training of the shipped model by `scripts/build_camvid_conv.sh` on {machine_description()} "
        "(the foundation under `torchrun --nproc_per_node 2`, DDP over gloo). For the shipped model the "
        "later stages ran two at a time, one thread each (`--set threads=1`), and some were killed "
        "and resumed from their last checkpoint; wall time counts training steps only (data loading "
        "included, evaluation excluded) and, with other work sharing the 2 cores, is an upper bound: "
        "alone on the machine a 600-step adapter run takes about 15 min.\n\n"
        + "\n".join(rows)
        + f"\n\nTotal training: **{total / 60:.0f} min**; the results "
        "tables add the evaluation times printed in [results.md](results.md).\n"
    )
    update_section(Path(args.docs) / "benchmarks.md", "training", body)
    print(body)


if __name__ == "__main__":
    main()
