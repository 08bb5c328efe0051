"""Regenerate the adapter results of docs/results.md: frozen / LoRA r4, r8, r16 / gated, box
prompts on the held-out sequence 0006R0 and on CamVid val, clean and under each degradation,
plus the active-rank figure.

    python scripts/results_adapters.py --data ../shared/data/camvid --limit 40
    python scripts/results_adapters.py --data ../shared/data/camvid --severities 4,5
    python scripts/results_adapters.py --data ../shared/data/camvid --prompts point --limit 34

Writes docs/results/adapters.json, docs/figures/active_rank.png and the `adapters` section of
docs/results.md; with one click per segment instead of its box (``--prompts point``) they
carry the suffix ``_point``, with severities other than the training range 1-3
(``--severities 4,5``: heavier than anything in training) the suffix ``_s45``.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from ranksam_ros.backends.torch_backend import TorchBackend  # noqa: E402
from ranksam_ros.cli_options import comma_list  # noqa: E402
from ranksam_ros.config import SEVERITIES, TRAIN_DEGRADATIONS, TRAIN_SEVERITIES  # noqa: E402
from ranksam_ros.eval.evaluate import evaluate  # noqa: E402
from ranksam_ros.eval.options import EvalOptions  # noqa: E402
from ranksam_ros.modeling.registry import build_model  # noqa: E402
from ranksam_ros.reporting import (  # noqa: E402
    adapter_results_name,
    machine_description,
    save_figure,
    update_section,
    write_json,
)

ROOT = Path(__file__).resolve().parents[1]
ADAPTERS = ("none", "lora_r4", "lora_r8", "lora_r16", "gated")
DEGRADES = ("none", *TRAIN_DEGRADATIONS, "motion")
LABELS = {
    "none": "frozen",
    "lora_r4": "LoRA r4",
    "lora_r8": "LoRA r8",
    "lora_r16": "LoRA r16",
    "gated": "gated (RankSAM)",
}


PROMPT_TEXT = {
    "box": "Box prompts",
    "point": "One click per segment (its most interior pixel; the best of SAM's three masks by "
    "predicted IoU)",
}


SPLITS = {  # name -> EvalOptions fields (given the CamVid root)
    "held-out 0006R0": lambda root: {"data": str(root / "train"), "sequences": ("0006R0",)},
    "val": lambda root: {"data": str(root / "val")},
}


def run(
    model: str,
    adapters: tuple[str, ...],
    root: Path,
    limit: int,
    seed: int,
    severities: tuple[int, ...],
    prompts: str,
) -> dict:
    """``{split: {adapter: {degradation: report}}}``."""
    results: dict = {split: {} for split in SPLITS}
    for adapter in adapters:
        backend = TorchBackend(build_model(model, adapter=adapter), threads=2)
        for split, fields in SPLITS.items():
            results[split][adapter] = run_adapter(
                backend, model, adapter, fields(root), limit, seed, severities, prompts
            )
    return results


def run_adapter(backend, model, adapter, fields, limit, seed, severities, prompts) -> dict:
    """``{degradation: report}`` of one adapter set on one split."""
    results = {}
    for degrade in DEGRADES:
        options = EvalOptions(
            model=model,
            adapter=adapter,
            **fields,
            prompts=prompts,
            degrade=degrade,
            severities=severities,
            seed=seed,
            limit=limit,
        )
        report = evaluate(options, backend)
        results[degrade] = report
        print(f"{adapter:<9} {degrade:<9} miou {report['miou']:.4f}", flush=True)
    return results


def table(results: dict) -> str:
    head = (
        "| adapter | clean | "
        + " | ".join(DEGRADES[1:])
        + " | mean of 4 trained | active rank (clean / mean 4) |"
    )
    rows = [head, "|" + "---|" * (len(DEGRADES) + 3)]
    for adapter in results:
        r = results[adapter]
        trained = np.mean([r[d]["miou"] for d in TRAIN_DEGRADATIONS])
        cells = [f"{100 * r[d]['miou']:.2f}" for d in DEGRADES]
        rank = "–"
        if r["none"].get("mean_active_rank") is not None:
            mean4 = np.mean([r[d]["mean_active_rank"] for d in TRAIN_DEGRADATIONS])
            rank = f"{r['none']['mean_active_rank']:.1f} / {mean4:.1f}"
        rows.append(
            f"| {LABELS[adapter]} | " + " | ".join(cells) + f" | **{100 * trained:.2f}** | {rank} |"
        )
    return "\n".join(rows)


def plot_ranks(results: dict, path: Path, severities: str) -> None:
    gated = results["gated"]  # one split's results
    data = [gated[d]["active_rank_per_image"] for d in DEGRADES]
    fig, ax = plt.subplots(figsize=(7, 3.5))
    ax.boxplot(data, showmeans=True)
    ax.set_xticks(range(1, len(DEGRADES) + 1), ["clean" if d == "none" else d for d in DEGRADES])
    ax.set_ylabel("active rank per adapted layer")
    ax.set_title(f"Gated-rank adapters: active rank per image, severities {severities}")
    ax.grid(axis="y", alpha=0.3)
    save_figure(fig, path)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0], allow_abbrev=False)
    parser.add_argument("--data", required=True, help="CamVid root (train/ and val/)")
    parser.add_argument("--model", default="camvid-tiny")
    parser.add_argument("--limit", type=int, default=0)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--docs", default=str(ROOT / "docs"))
    parser.add_argument(
        "--severities",
        type=comma_list(int, SEVERITIES),
        default=TRAIN_SEVERITIES,
        help="comma-separated severities the frames cycle through (default: the training range)",
    )
    parser.add_argument("--prompts", default="box", choices=sorted(PROMPT_TEXT))
    parser.add_argument(
        "--adapters",
        type=comma_list(str, ADAPTERS),
        default=ADAPTERS,
        help="comma-separated adapter sets the model has (default: all five)",
    )
    parser.add_argument(
        "--tag", default="", help="suffix of the section and files for another model (conv)"
    )
    args = parser.parse_args()
    severities = args.severities
    started = time.perf_counter()
    results = run(
        args.model, args.adapters, Path(args.data), args.limit, args.seed, severities, args.prompts
    )
    minutes = (time.perf_counter() - started) / 60
    docs = Path(args.docs)
    name = adapter_results_name(args.prompts, severities, args.tag)
    suffix = name.removeprefix("adapters")
    option = "" if args.prompts == "box" else f" --prompts {args.prompts}"
    if severities != TRAIN_SEVERITIES:
        option += " --severities " + ",".join(map(str, severities))
    if args.limit:
        option += f" --limit {args.limit}"
    if args.model != parser.get_default("model"):
        option = f" --model {args.model}" + option
    if args.adapters != ADAPTERS:
        option += " --adapters " + ",".join(args.adapters)
    if args.tag:
        option += f" --tag {args.tag}"
    listed = "-".join(map(str, severities)) if len(severities) > 1 else str(severities[0])
    write_json(docs / "results" / f"{name}.json", results)
    plot_ranks(results["held-out 0006R0"], docs / "figures" / f"active_rank{suffix}.png", listed)
    tables = "\n\n".join(
        f"{split} ({results[split]['none']['none']['images']} frames):\n\n{table(results[split])}"
        for split in SPLITS
    )
    body = (
        f"{PROMPT_TEXT[args.prompts]}, mean segment IoU (%) over segments >= 64 px, "
        f"degradations at severities cycling {listed} per frame, seed {args.seed}. Model "
        f"`{args.model}`; command `python scripts/results_adapters.py --data <camvid>{option}`; "
        f"{minutes:.0f} min on {machine_description()}.\n\n{tables}\n\n"
        f"![active rank per degradation, held-out sequence](figures/active_rank{suffix}.png)\n"
    )
    update_section(docs / "results.md", name, body)
    print(tables)


if __name__ == "__main__":
    main()
