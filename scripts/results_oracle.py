"""Regenerate the oracle study of docs/results.md: one LoRA r16 per degradation against the
shared LoRA r16 and the gated adapters, box prompts on CamVid val.

    python scripts/results_oracle.py --data ../shared/data/camvid

A gate that picks components per image can at best act like an oracle that hands every
degradation its own specialist. This trains (or reuses, from ``--runs``) a LoRA r16 on low
light only and one on fog only, with the recipe of the shared set, and evaluates each on its
degradation at severities 1-3 and 4-5 and on clean frames. Noise and blur get no specialist:
they leave the frozen model at clean accuracy, so their oracle entry is the best of frozen,
shared LoRA and gated. Reads the other rows from docs/results/adapters.json and
adapters_s45.json (run scripts/results_adapters.py first); writes docs/results/oracle_lora.json
and the `oracle` section of docs/results.md.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from ranksam_ros.backends import create_backend
from ranksam_ros.config import TRAIN_DEGRADATIONS, TRAIN_SEVERITIES, BackendConfig
from ranksam_ros.eval.evaluate import evaluate
from ranksam_ros.eval.options import EvalOptions
from ranksam_ros.reporting import (
    adapter_results_name,
    machine_description,
    update_section,
    write_json,
)

ROOT = Path(__file__).resolve().parents[1]
SPECIALISED = ("lowlight", "fog")
SEVERITY_SETS = {"1-3": TRAIN_SEVERITIES, "4-5": (4, 5)}
SHARED_ROWS = {"none": "frozen", "lora_r16": "LoRA r16, one set for all four", "gated": "gated"}


def train_specialist(kind: str, data: str, runs: Path, foundation: str, threads: int) -> Path:
    """Train (or reuse) a LoRA r16 on one degradation; returns its adapter file."""
    out = runs / f"oracle_lora_r16_{kind}"
    adapter = out / "adapter.safetensors"
    if adapter.is_file():
        return adapter
    command = [
        *(sys.executable, "-m", "ranksam_ros.cli", "train"),
        *("--config", str(ROOT / "config/train/adapter_lora.yaml"), "--data", data),
        *("--set", f"model={foundation}", "--set", "adapter.rank=16"),
        *("--set", f"data.degrade.kinds=[{kind}]", "--set", f"threads={threads}"),
        *("--out", str(out)),
    ]
    subprocess.run(command, check=True)
    return adapter


def evaluate_specialist(adapter: Path, kind: str, val: str) -> dict:
    """Reports of one specialist on its degradation per severity set, and on clean frames."""
    base = {"model": "camvid-tiny", "data": val, "adapter": str(adapter)}
    # Loaded once, used thrice.
    backend = create_backend(BackendConfig(model=base["model"], adapter=base["adapter"]))
    reports = {
        f"severities_{name}": evaluate(
            EvalOptions(**base, degrade=kind, severities=levels), backend
        )
        for name, levels in SEVERITY_SETS.items()
    }
    reports["clean"] = evaluate(EvalOptions(**base), backend)
    return reports


def table(shared: dict, specialists: dict, severities: str) -> str:
    """Markdown rows: frozen / shared LoRA r16 / gated / oracle, per training degradation."""
    kinds = TRAIN_DEGRADATIONS
    rows = [
        f"| box mIoU (%), severities {severities} | " + " | ".join(kinds) + " | mean of 4 |",
        "|---" * (len(kinds) + 2) + "|",
    ]
    for key, label in SHARED_ROWS.items():
        cells = [100 * shared[key][k]["miou"] for k in kinds]
        rows.append(
            f"| {label} | " + " | ".join(f"{c:.2f}" for c in cells) + f" | {np.mean(cells):.2f} |"
        )
    oracle, names = [], []
    for k in kinds:
        if k in specialists:
            oracle.append(100 * specialists[k][f"severities_{severities}"]["miou"])
            names.append(f"{oracle[-1]:.2f} (LoRA r16, {k} only)")
        else:
            best = max(SHARED_ROWS, key=lambda key, k=k: shared[key][k]["miou"])
            oracle.append(100 * shared[best][k]["miou"])
            names.append(f"{oracle[-1]:.2f} ({SHARED_ROWS[best].split(',')[0]})")
    rows.append(
        "| oracle: best specialist per degradation | "
        + " | ".join(names)
        + f" | **{np.mean(oracle):.2f}** |"
    )
    return "\n".join(rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0], allow_abbrev=False)
    parser.add_argument("--data", required=True, help="CamVid folder holding train/ and val/")
    parser.add_argument("--runs", default="runs", help="where the specialists are trained")
    parser.add_argument("--foundation", default="runs/foundation/model.safetensors")
    parser.add_argument("--threads", type=int, default=0, help="training threads (0 = all)")
    parser.add_argument("--docs", default=str(ROOT / "docs"))
    args = parser.parse_args()
    docs, val = Path(args.docs), str(Path(args.data) / "val")
    shared = {
        name: json.loads(
            (docs / "results" / f"{adapter_results_name('box', levels)}.json").read_text()
        )
        for name, levels in SEVERITY_SETS.items()
    }
    specialists, seconds = {}, 0.0
    for kind in SPECIALISED:
        adapter = train_specialist(kind, args.data, Path(args.runs), args.foundation, args.threads)
        started = time.perf_counter()
        specialists[kind] = evaluate_specialist(adapter, kind, val)
        seconds += time.perf_counter() - started
    minutes = seconds / 60
    write_json(docs / "results" / "oracle_lora.json", specialists, relative_to=ROOT)
    clean = ", ".join(f"{k} {100 * r['clean']['miou']:.2f}" for k, r in specialists.items())
    body = (
        f"Box prompts, mean segment IoU (%) on CamVid val; specialists evaluated with `camvid-tiny` "
        f"(clean frames: {clean}); the other rows from the adapter tables above. Command: "
        f"`python scripts/results_oracle.py --data <camvid>` ({minutes:.0f} min of evaluation, "
        f"training not counted, on {machine_description()}).\n\n"
        + "\n\n".join(table(shared[name], specialists, name) for name in SEVERITY_SETS)
        + "\n"
    )
    update_section(docs / "results.md", "oracle", body)
    print(body)


if __name__ == "__main__":
    main()
