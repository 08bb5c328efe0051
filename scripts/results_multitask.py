"""Multi-task adapter sets side by side: TA-LoRA (Tucker) against LoRA-STL and LoRA-HPS.

For each set trained with config/train/multitask.yaml (``adapter.sharing`` tucker, separate,
shared) the script scores every task on the held-out sequence and on val, computes Δm against
STL, counts adapter parameters and times the model per frame; the `multitask` section of
docs/results.md and docs/results/multitask.json.

    python scripts/results_multitask.py --data ../shared/data/camvid --runs runs \
        --foundation ranksam_ros/models/camvid-tiny
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

from ranksam_ros.config import DataConfig
from ranksam_ros.data.folder import SegmentationFolder
from ranksam_ros.eval.frames import frame_indices
from ranksam_ros.eval.tasks import delta_m, evaluate_tasks
from ranksam_ros.modeling.registry import build_model
from ranksam_ros.modeling.task_io import load_multitask
from ranksam_ros.reporting import machine_description, update_section, write_json

ROOT = Path(__file__).resolve().parents[1]
SETS = {
    "TA-LoRA (tucker)": "multitask_tucker",
    "LoRA-STL": "multitask_separate",
    "LoRA-HPS": "multitask_shared",
}
HELD_OUT = ("0006R0",)


def adapter_parameters(model) -> int:
    """Values of the multi-task adapter (the encoder update, not the heads)."""
    return sum(p.numel() for n, p in model.base.named_parameters() if "tlora_" in n)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0], allow_abbrev=False)
    parser.add_argument("--data", required=True, help="CamVid root (train/ and val/)")
    parser.add_argument("--runs", default="runs")
    parser.add_argument("--foundation", required=True)
    parser.add_argument("--limit", type=int, default=0)
    parser.add_argument("--stride", type=int, default=1, help="every Nth frame of each split")
    parser.add_argument("--docs", default=str(ROOT / "docs"))
    args = parser.parse_args()
    torch.set_num_threads(2)
    dataset = DataConfig()
    splits = {
        "held-out 0006R0": SegmentationFolder(Path(args.data) / "train", sequences=HELD_OUT),
        "val": SegmentationFolder(Path(args.data) / "val"),
    }
    results = {}
    for label, run in SETS.items():
        model = load_multitask(
            Path(args.runs) / run / "multitask.safetensors", build_model(args.foundation)
        )
        entry = {"adapter_parameters": adapter_parameters(model), "sharing": model.adapter.sharing}
        for split, folder in splits.items():
            indices = frame_indices(len(folder), args.stride, args.limit)
            entry[split] = evaluate_tasks(model, folder, indices, dataset)
        results[label] = entry
        print(label, entry)
    base = results["LoRA-STL"]
    for entry in results.values():
        for split in splits:
            entry[split]["delta_m"] = delta_m(entry[split]["scores"], base[split]["scores"])
    docs = Path(args.docs)
    write_json(docs / "results" / "multitask.json", results)
    split_names = list(splits)
    rows = [
        "| adapter set | adapter params | "
        + " | ".join(f"{s}: semantic mIoU / boundary F1 / centre F1 / Δm" for s in split_names)
        + " | ms per frame |",
        "|---|---|" + "---|" * len(split_names) + "---|",
    ]
    for label, entry in results.items():
        cells = []
        for split in split_names:
            s = entry[split]["scores"]
            cells.append(
                f"{100 * s['semantic']:.1f} / {100 * s['boundary']:.1f} / "
                f"{100 * s['centre']:.1f} / {entry[split]['delta_m']:+.2f}%"
            )
        ms = 1000 * entry[split_names[0]]["seconds_per_image"]
        rows.append(
            f"| {label} | {entry['adapter_parameters']:,} | " + " | ".join(cells) + f" | {ms:.0f} |"
        )
    body = (
        f"Multi-task adapter sets on `{args.foundation}` (frozen), one head per task, each "
        "trained with `config/train/multitask.yaml` for the same steps (`--set "
        "adapter.sharing=tucker|separate|shared`); Δm against LoRA-STL; torch, 2 threads, "
        f"{machine_description()}. Command: `python scripts/results_multitask.py --data "
        f"<camvid> --runs runs --foundation <model> --stride {args.stride}` (one frame in "
        f"{args.stride} of each split).\n\n" + "\n".join(rows) + "\n"
    )
    update_section(docs / "results.md", "multitask", body)
    print(body)


if __name__ == "__main__":
    main()
