"""The foundation table of docs/results.md: every measure on the held-out sequence beside val.

For each model (the shipped one by default; ``--models`` adds others, e.g. the first
foundation kept in git history or a training run): box prompts (mean segment IoU over all
segments and over large ones, against the filled box), one click per segment, the dense
semantic head alone, the promptless pipeline (semantic mIoU) and its panoptic quality, on
CamVid sequence 0006R0 (held out of training) and on val.

    python scripts/results_foundation.py --data ../shared/data/camvid [--stride N] [--limit N]
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from ranksam_ros.backends import create_backend
from ranksam_ros.config import BackendConfig, DataConfig
from ranksam_ros.eval.evaluate import evaluate
from ranksam_ros.eval.options import EvalOptions
from ranksam_ros.reporting import machine_description, update_section, write_json

ROOT = Path(__file__).resolve().parents[1]
CLASSES = DataConfig().class_names
HELD_OUT = ("0006R0",)
MEASURES = {  # label -> (prompt mode, report key)
    "box, all segments": ("box", "miou"),
    "box, large segments": ("box", "miou_large"),
    "filled box, all segments": ("box", "box_baseline_miou"),
    "filled box, large segments": ("box", "box_baseline_miou_large"),
    "one click, all segments": ("point", "miou"),
    "semantic head alone, mIoU": ("semantic", "miou"),
    "promptless pipeline, semantic mIoU": ("auto", "miou"),
    "panoptic output, PQ": ("panoptic", "pq"),
    "panoptic output, semantic mIoU": ("panoptic", "miou"),
}


def splits(data: Path) -> dict[str, dict]:
    """Held-out sequence and val as ``EvalOptions`` fields."""
    return {
        "held-out 0006R0": {"data": str(data / "train"), "sequences": HELD_OUT},
        "val": {"data": str(data / "val")},
    }


def run_model(model: str, adapter: str, data: Path, limit: int, stride: int) -> dict:
    """``{split: {mode: report}}`` for one model."""
    backend = create_backend(BackendConfig(model=model, adapter=adapter, threads=2))
    modes = sorted({mode for mode, _ in MEASURES.values()})
    if not backend.info.semantic_head:
        modes = [m for m in modes if m not in ("semantic", "panoptic")]
    out = {}
    for split, fields in splits(data).items():
        out[split] = {}
        for mode in modes:
            options = EvalOptions(
                model=model,
                adapter=adapter,
                prompts=mode,
                limit=limit,
                stride=stride,
                threads=2,
                **fields,
            )
            out[split][mode] = evaluate(options, backend=backend)
            print(model, split, mode, round(out[split][mode]["miou"], 4))
    return out


def table(results: dict, split_names: list[str]) -> str:
    header = "| measure | " + " | ".join(
        f"{model} ({split})" for model in results for split in split_names
    )
    rows = [header + " |", "|---|" + "---|" * (len(results) * len(split_names))]
    for label, (mode, key) in MEASURES.items():
        cells = []
        for model in results:
            for split in split_names:
                report = results[model][split].get(mode)
                cells.append("-" if report is None else f"{report[key]:.3f}")
        rows.append(f"| {label} | " + " | ".join(cells) + " |")
    return "\n".join(rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0], allow_abbrev=False)
    parser.add_argument("--data", required=True, help="CamVid root (train/ and val/)")
    parser.add_argument(
        "--models",
        default="camvid-tiny",
        help="comma-separated models, each MODEL or LABEL=MODEL (the label heads its columns)",
    )
    parser.add_argument("--adapter", default="none")
    parser.add_argument("--limit", type=int, default=0)
    parser.add_argument("--stride", type=int, default=1, help="every Nth frame of each split")
    parser.add_argument("--docs", default=str(ROOT / "docs"))
    parser.add_argument(
        "--merge",
        action="store_true",
        help="keep the other models of the last run's JSON (columns of earlier runs stay; "
        "re-evaluated labels are replaced)",
    )
    parser.add_argument(
        "--tables-only",
        action="store_true",
        help="rewrite the section from the JSON of the last run instead of evaluating",
    )
    args = parser.parse_args()
    started = time.perf_counter()
    data = Path(args.data)
    docs = Path(args.docs)
    json_path = docs / "results" / "foundation.json"
    if args.tables_only:
        results = json.loads(json_path.read_text())
        focus = next(iter(results))
    else:
        models = dict(
            entry.split("=", 1) if "=" in entry else (entry, entry)
            for entry in args.models.split(",")
        )
        focus = next(iter(models))  # per-class rows of the first model asked for
        results = json.loads(json_path.read_text()) if args.merge else {}
        for label, model in models.items():
            results[label] = run_model(model, args.adapter, data, args.limit, args.stride)
        write_json(json_path, results, relative_to=ROOT)
    minutes = "" if args.tables_only else f"{(time.perf_counter() - started) / 60:.0f} min on "
    split_names = list(splits(data))
    first = results[focus]
    per_class = []
    for split in split_names:
        for mode in ("box", "semantic"):
            report = first[split].get(mode)
            if report is not None:
                scores = report["class_iou"]
                values = " | ".join(
                    f"{scores[name]:.3f}" if name in scores else "-" for name in CLASSES
                )
                per_class.append(f"| {split}, {mode} | {values} |")
    classes = " | ".join(CLASSES)
    body = (
        f"Clean frames, adapter `{args.adapter}`, CamVid sequence 0006R0 (101 frames of CamVid "
        "train, held out of every training stage) beside val (101 frames continuing training "
        "sequence 0016E5). Box and click: mean IoU over every labelled segment of 64 px and up "
        f"(large: 1000 px and up) at source resolution, one frame in {args.stride}; semantic: mIoU over the 11 classes; PQ: "
        "torchmetrics' panoptic quality (thing instances = connected components). Command: "
        f"`python scripts/results_foundation.py --data <camvid> --models '{args.models}' "
        f"--stride {args.stride}{' --merge' if args.merge else ''}` "
        f"({minutes}{machine_description()}).\n\n"
        + table(results, split_names)
        + f"\n\nPer class ({focus}):\n\n| | {classes} |\n|---|"
        + "---|" * len(CLASSES)
        + "\n"
        + "\n".join(per_class)
        + "\n"
    )
    update_section(docs / "results.md", "foundation", body)
    print(body)


if __name__ == "__main__":
    main()
