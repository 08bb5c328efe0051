"""Assemble the shipped model directory from training runs.

    python scripts/package_model.py --runs runs --out ranksam_ros/models/camvid-tiny

Copies the foundation (its last phase), the prompt predictor, every adapter set (gated, LoRA
r4/r8/r16 and, as `lora`, the best of them: mean box mIoU over the four training
degradations, read from docs/results/adapters.json when it exists; the PA-SAM decoder set)
and the TA-LoRA multi-task set; writes model.json, the model card (with `--calibration`, the
model's own box cut and semantic prior correction from held-out sweeps of
scripts/calibrate_threshold.py and scripts/calibrate_semantic_prior.py).
"""

from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path

import numpy as np

from ranksam_ros.checkpoint import read_meta
from ranksam_ros.config import TRAIN_DEGRADATIONS
from ranksam_ros.modeling.ranksam import SEMANTIC_OFFSETS

ROOT = Path(__file__).resolve().parents[1]
LORA_RANKS = (4, 8, 16)
FOUNDATION_PHASES = ("foundation_conv2", "foundation_conv")  # newest first


def best_lora(results_path: Path, available: list[str]) -> str:
    """The LoRA rank with the best mean box mIoU over the training degradations (held out)."""
    if not results_path.is_file():
        return available[-1]
    # Chosen on the held-out sequence, never on val (which continues a training sequence).
    results = json.loads(results_path.read_text()).get("held-out 0006R0")
    if results is None:
        print(f"{results_path} has no held-out figures: lora = the highest rank")
        return available[-1]
    scores = {
        name: np.mean([results[name][d]["miou"] for d in TRAIN_DEGRADATIONS])
        for name in available
        if name in results
    }
    return max(scores, key=scores.get) if scores else available[-1]


def fits_foundation(multitask: Path, foundation: Path) -> bool:
    """Whether a multi-task set was trained on this foundation (else it is left out, said)."""
    from ranksam_ros.modeling.registry import build_model
    from ranksam_ros.modeling.task_io import foundation_fingerprint

    trained_on = read_meta(multitask)["foundation_fingerprint"]
    if trained_on == foundation_fingerprint(build_model(str(foundation))):
        return True
    print(
        f"left out {multitask}: trained on another foundation ({read_meta(multitask)['foundation']})"
    )
    return False


def calibration_of(sweep_paths: list[Path], class_names: list[str]) -> dict:
    """The model card's ``calibration`` from calibration sweeps, and how each was chosen.

    A box-cut sweep (scripts/calibrate_threshold.py) gives ``box_mask_threshold``; a
    semantic prior sweep (scripts/calibrate_semantic_prior.py) ``semantic_logit_offsets``,
    whose classes must be the model's (the card lists offsets by position).

    Raises:
        ValueError: a file that is neither sweep, two sweeps of one kind, or offsets for
            other classes.
    """
    calibration, sources = {}, []
    for path in sweep_paths:
        sweep = json.loads(path.read_text())
        if "best_box_mask_threshold" in sweep:
            key, value = "box_mask_threshold", sweep["best_box_mask_threshold"]
        elif SEMANTIC_OFFSETS in sweep:
            key, value = SEMANTIC_OFFSETS, sweep[SEMANTIC_OFFSETS]
            if sweep.get("class_names") != class_names:
                raise ValueError(
                    f"{path}: offsets for {sweep.get('class_names')}, not {class_names}"
                )
        else:
            raise ValueError(f"{path}: neither a box-cut nor a semantic prior sweep")
        if key in calibration:
            raise ValueError(f"{path}: a second {key} sweep")
        calibration[key] = value
        sources.append(f"{sweep['criterion']}; {sweep.get('data', '')} ({path.name})")
    return {**calibration, "source": " | ".join(sources)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0], allow_abbrev=False)
    parser.add_argument("--runs", default="runs")
    parser.add_argument("--out", default=str(ROOT / "ranksam_ros/models/camvid-tiny"))
    parser.add_argument("--results", default=str(ROOT / "docs/results/adapters.json"))
    parser.add_argument(
        "--calibration",
        action="append",
        default=[],
        help="a calibration sweep of this model for its card (repeatable): a box cut "
        "(scripts/calibrate_threshold.py --json) or a semantic prior "
        "(scripts/calibrate_semantic_prior.py --json)",
    )
    args = parser.parse_args()
    runs, out = Path(args.runs), Path(args.out)
    if out.exists():
        shutil.rmtree(out)  # a stale file of an earlier model must not survive
    (out / "adapters").mkdir(parents=True)
    phase = next(runs / p for p in FOUNDATION_PHASES if (runs / p / "model.safetensors").is_file())
    shutil.copy(phase / "model.safetensors", out / "model.safetensors")
    shutil.copy(
        runs / "prompt_predictor/prompt_predictor.safetensors", out / "prompt_predictor.safetensors"
    )
    gated = runs / "adapter_gated/adapter.safetensors"
    if gated.is_file():
        shutil.copy(gated, out / "adapters/gated.safetensors")
    loras = []
    for rank in LORA_RANKS:
        source = runs / f"adapter_lora_r{rank}/adapter.safetensors"
        if source.is_file():
            shutil.copy(source, out / f"adapters/lora_r{rank}.safetensors")
            loras.append(f"lora_r{rank}")
    pa_sam = runs / "pa_sam/adapter.safetensors"  # the decoder set for clicks (PA-SAM)
    if pa_sam.is_file():
        shutil.copy(pa_sam, out / "adapters/pa_sam.safetensors")
    chosen = best_lora(Path(args.results), loras) if loras else None
    if chosen:
        shutil.copy(out / f"adapters/{chosen}.safetensors", out / "adapters/lora.safetensors")
    multitask = runs / "multitask_tucker/multitask.safetensors"
    if multitask.is_file() and fits_foundation(multitask, phase / "model.safetensors"):
        shutil.copy(multitask, out / "multitask.safetensors")
    card = {
        "name": out.name,
        "foundation": {"run": phase.name, **read_meta(phase / "model.safetensors")["info"]},
        "prompt_predictor": read_meta(out / "prompt_predictor.safetensors")["info"],
        "adapters": {
            p.stem: read_meta(p)["info"] for p in sorted((out / "adapters").glob("*.safetensors"))
        },
        "lora_alias": chosen,
        "multitask": read_meta(multitask)["info"]
        if (out / "multitask.safetensors").is_file()
        else None,
        "data": "CamVid train without sequence 0006R0 (held out for model choice and results); "
        "see docs/results.md",
    }
    if args.calibration:
        classes = read_meta(out / "model.safetensors")["arch"].get("semantic_classes") or []
        card["calibration"] = calibration_of([Path(p) for p in args.calibration], classes)
    (out / "model.json").write_text(json.dumps(card, indent=2) + "\n")
    size = sum(p.stat().st_size for p in out.rglob("*") if p.is_file()) / 2**20
    print(f"packaged {out} ({size:.1f} MB), lora = {chosen}")


if __name__ == "__main__":
    main()
