"""Multi-task adapter sets side by side: TA-LoRA (Tucker) against LoRA-STL and LoRA-HPS.

For each set trained with config/train/multitask.yaml (``adapter.sharing`` tucker, separate,
shared) the script scores every task on the held-out sequence and on val, computes Δm against
STL, counts adapter parameters and times the model per frame; the `multitask` section of
docs/results.md and docs/results/multitask.json.

    python scripts/results_multitask.py --data ../shared/data/camvid --runs runs \
        --foundation ranksam_ros/models/camvid-tiny [--seeds 0,1]

With several seeds each set is trained once per seed (``--set seed=K --out
runs/multitask_<sharing>_sK``; seed 0 is the plain run name) and Δm is taken against STL of
the same seed, so the table shows whether the sets differ by more than a reseed moves them.
``--recorded K`` takes seed K's scores from docs/results/multitask.json as an earlier run of
this script wrote them (its training runs need not be on disk any more); a variant of
OPTIONAL_SETS trained since is scored and set beside them.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
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
# Variants scored when their run exists (left out of the table otherwise).
OPTIONAL_SETS = {
    # The shipped set has task rank 3 (one per task, chosen on the held-out sequence); the
    # rank-2 run it replaced, with --set adapter.rank_task=2:
    "TA-LoRA (tucker), task rank 2": "multitask_tucker_rt2",
    # The paper code's regulariser weight (its run.sh: 1; ours 0.1), both sharing kinds, with
    # --set adapter.orthogonality_weight=1.0:
    "TA-LoRA (tucker), orthogonality 1": "multitask_tucker_o1",
    "LoRA-HPS, orthogonality 1": "multitask_shared_o1",
}
BASELINE = "LoRA-STL"
HELD_OUT = ("0006R0",)
TASKS = ("semantic", "boundary", "centre")


def adapter_parameters(model) -> int:
    """Values of the multi-task adapter (the encoder update, not the heads)."""
    return sum(p.numel() for n, p in model.base.named_parameters() if "tlora_" in n)


def run_dir(runs: Path, name: str, seed: int) -> Path:
    """Seed 0 is the plain run name (``--set seed=0``); seed K trains into ``<name>_sK``."""
    return runs / (name if seed == 0 else f"{name}_s{seed}")


def evaluate_seed(
    args, seed: int, splits: dict, dataset: DataConfig, known: dict | None = None
) -> dict:
    """Every set of one seed scored on every split, with Δm against that seed's STL.

    ``known``: the seed's scores as recorded; only sets it lacks are evaluated (a variant
    trained later is scored beside recorded baselines of the same seed and frames).
    """
    results = dict(known or {})
    for label, name in {**SETS, **OPTIONAL_SETS}.items():
        path = run_dir(Path(args.runs), name, seed) / "multitask.safetensors"
        if label in results or (label in OPTIONAL_SETS and not path.is_file()):
            continue
        model = load_multitask(path, build_model(args.foundation))
        entry = {"adapter_parameters": adapter_parameters(model), "sharing": model.adapter.sharing}
        for split, folder in splits.items():
            indices = frame_indices(len(folder), args.stride, args.limit)
            entry[split] = evaluate_tasks(model, folder, indices, dataset)
        results[label] = entry
        print(f"seed {seed}", label, entry)
    for entry in results.values():
        for split in splits:
            base = results[BASELINE][split]["scores"]
            entry[split]["delta_m"] = delta_m(entry[split]["scores"], base)
    return results


def recorded_seeds(path: Path, seeds: str, frames: dict) -> dict[int, dict]:
    """Scores of ``seeds`` (comma-separated) as recorded in ``path``; {} for none.

    Raises:
        ValueError: a seed the file does not hold, or scores of other frames (``frames``:
            this run's ``stride`` and ``limit``).
    """
    if not seeds:
        return {}
    import json

    recorded = json.loads(path.read_text()) if path.is_file() else {}
    if recorded.get("frames") != frames:
        raise ValueError(
            f"--recorded {seeds}: {path} scored frames {recorded.get('frames')}, this run "
            f"scores {frames}; mixing them would compare different frames"
        )
    per_seed = recorded["per_seed"]
    wanted = [int(s) for s in seeds.split(",")]
    missing = [seed for seed in wanted if str(seed) not in per_seed]
    if missing:
        raise ValueError(f"--recorded {seeds}: {path} holds no scores of seed(s) {missing}")
    return {seed: per_seed[str(seed)] for seed in wanted}


def spread(values: list[float]) -> str:
    """``mean`` for one seed, ``mean ± sample std`` for several."""
    mean = f"{np.mean(values):+.2f}"
    return mean if len(values) == 1 else f"{mean} ± {np.std(values, ddof=1):.2f}"


def table(per_seed: dict[int, dict], split_names: list[str]) -> list[str]:
    """Markdown rows: task scores averaged over seeds, Δm per seed and its mean ± std."""
    seeds = list(per_seed)
    rows = [
        "| adapter set | adapter params | "
        + " | ".join(f"{s}: semantic mIoU / boundary F1 / centre F1 / Δm" for s in split_names)
        + " | Δm per seed (held-out) | ms per frame |",
        "|---|---|" + "---|" * len(split_names) + "---|---|",
    ]
    for label in [name for name in (*SETS, *OPTIONAL_SETS) if name in per_seed[seeds[0]]]:
        entries = [per_seed[seed][label] for seed in seeds if label in per_seed[seed]]
        cells = []
        for split in split_names:
            mean = {t: np.mean([e[split]["scores"][t] for e in entries]) for t in TASKS}
            deltas = [e[split]["delta_m"] for e in entries]
            cells.append(
                " / ".join(f"{100 * mean[t]:.1f}" for t in TASKS) + f" / {spread(deltas)}%"
            )
        first = split_names[0]
        seeds_cell = " / ".join(f"{e[first]['delta_m']:+.2f}" for e in entries)
        ms = 1000 * np.median([e[first]["seconds_per_image"] for e in entries])
        rows.append(
            f"| {label} | {entries[0]['adapter_parameters']:,} | "
            + " | ".join(cells)
            + f" | {seeds_cell} | {ms:.0f} |"
        )
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0], allow_abbrev=False)
    parser.add_argument("--data", required=True, help="CamVid root (train/ and val/)")
    parser.add_argument("--runs", default="runs")
    parser.add_argument("--foundation", required=True)
    parser.add_argument("--limit", type=int, default=0)
    parser.add_argument("--stride", type=int, default=1, help="every Nth frame of each split")
    parser.add_argument(
        "--seeds", default="0", help="comma-separated seeds (K > 0 reads <run>_sK directories)"
    )
    parser.add_argument(
        "--recorded",
        default="",
        help="comma-separated seeds whose scores are read from results/multitask.json",
    )
    parser.add_argument("--docs", default=str(ROOT / "docs"))
    args = parser.parse_args()
    torch.set_num_threads(2)
    dataset = DataConfig()
    splits = {
        "held-out 0006R0": SegmentationFolder(Path(args.data) / "train", sequences=HELD_OUT),
        "val": SegmentationFolder(Path(args.data) / "val"),
    }
    docs = Path(args.docs)
    frames = {"stride": args.stride, "limit": args.limit}
    recorded = recorded_seeds(docs / "results" / "multitask.json", args.recorded, frames)
    seeds = sorted({int(s) for s in args.seeds.split(",")} | set(recorded))
    per_seed = {
        seed: evaluate_seed(args, seed, splits, dataset, recorded.get(seed)) for seed in seeds
    }
    write_json(
        docs / "results" / "multitask.json",
        {"seeds": seeds, "frames": frames, "per_seed": {str(k): v for k, v in per_seed.items()}},
    )
    rows = table(per_seed, list(splits))
    command = (
        "python scripts/results_multitask.py --data <camvid> --runs runs --foundation <model> "
        f"--stride {args.stride} --seeds {','.join(map(str, seeds))}"
    )
    note = f"one frame in {args.stride} of each split"
    if recorded:
        command += f" --recorded {args.recorded}"
        note = f"seed(s) {args.recorded} as an earlier run of the script recorded them; {note}"
    body = (
        f"Multi-task adapter sets on `{args.foundation}` (frozen), one head per task, each "
        "trained with `config/train/multitask.yaml` for the same steps (`--set "
        "adapter.sharing=tucker|separate|shared --set seed=K`), seeds "
        f"{', '.join(map(str, seeds))}; scores are means over seeds, Δm against LoRA-STL of "
        f"the same seed (mean ± std over seeds); torch, 2 threads, {machine_description()}. "
        f"Command: `{command}` ({note}).\n\n" + "\n".join(rows) + "\n"
    )
    update_section(docs / "results.md", "multitask", body)
    print(body)


if __name__ == "__main__":
    main()
