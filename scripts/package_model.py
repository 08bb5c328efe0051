"""Assemble the shipped model directory from training runs.

    python scripts/package_model.py --runs runs --out ranksam_ros/models/camvid-tiny

Copies the foundation (after its newest fixed-encoder phase: the second polishing leg of the
detail head + decoder, else the earlier ones, else the decoder phase, whichever was run), the
prompt predictor and every adapter set, and names the best fixed-rank LoRA (mean box mIoU over
the four training degradations on val, read from docs/results/adapters.json when it exists) as
the `lora` adapter.
"""

from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path

import numpy as np

from ranksam_ros.checkpoint import read_meta
from ranksam_ros.config import TRAIN_DEGRADATIONS

ROOT = Path(__file__).resolve().parents[1]
LORA_RANKS = (4, 8, 16)
# Newest first.
FIXED_ENCODER_PHASES = ("detail_polish2", "detail_polish", "detail_joint", "decoder")


def best_lora(results_path: Path) -> str:
    if not results_path.is_file():
        return "lora_r8"
    results = json.loads(results_path.read_text())
    scores = {
        f"lora_r{r}": np.mean([results[f"lora_r{r}"][d]["miou"] for d in TRAIN_DEGRADATIONS])
        for r in LORA_RANKS
        if f"lora_r{r}" in results
    }
    return max(scores, key=scores.get)


def check_same_encoder(foundation: Path, phase: Path) -> None:
    """Exit unless the fixed-encoder phase sits on this foundation's image encoder.

    The prompt predictor and the adapters were trained on that encoder's embeddings, so a
    stale phase run from another foundation must not be packaged with them.
    """
    from safetensors.numpy import load_file

    base, tuned = load_file(str(foundation)), load_file(str(phase))
    keys = [k for k in base if "image_encoder." in k]
    if not keys or any(k not in tuned or not np.array_equal(base[k], tuned[k]) for k in keys):
        raise SystemExit(f"{phase} has another image encoder than {foundation}: re-run it")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0], allow_abbrev=False)
    parser.add_argument("--runs", default="runs")
    parser.add_argument("--out", default=str(ROOT / "ranksam_ros/models/camvid-tiny"))
    parser.add_argument("--results", default=str(ROOT / "docs/results/adapters.json"))
    args = parser.parse_args()
    runs, out = Path(args.runs), Path(args.out)
    (out / "adapters").mkdir(parents=True, exist_ok=True)
    # A later phase on the fixed encoder supersedes the foundation when it was run.
    foundation = runs / "foundation/model.safetensors"
    later = [runs / name / "model.safetensors" for name in FIXED_ENCODER_PHASES]
    phase = next((path for path in later if path.is_file()), None)
    if phase is not None:
        check_same_encoder(foundation, phase)
    shutil.copy(phase or foundation, out / "model.safetensors")
    shutil.copy(
        runs / "prompt_predictor/prompt_predictor.safetensors", out / "prompt_predictor.safetensors"
    )
    shutil.copy(runs / "adapter_gated/adapter.safetensors", out / "adapters/gated.safetensors")
    for rank in LORA_RANKS:
        shutil.copy(
            runs / f"adapter_lora_r{rank}/adapter.safetensors",
            out / f"adapters/lora_r{rank}.safetensors",
        )
    chosen = best_lora(Path(args.results))
    shutil.copy(out / f"adapters/{chosen}.safetensors", out / "adapters/lora.safetensors")
    card = {
        "name": out.name,
        "foundation": read_meta(runs / "foundation/model.safetensors")["info"],
        "fixed_encoder_phase": (
            {"run": phase.parent.name, **read_meta(phase)["info"]} if phase else None
        ),
        "prompt_predictor": read_meta(out / "prompt_predictor.safetensors")["info"],
        "adapters": {
            p.stem: read_meta(p)["info"] for p in sorted((out / "adapters").glob("*.safetensors"))
        },
        "lora_alias": chosen,
        "data": "CamVid train (367 frames), tuned on val; see docs/results.md",
    }
    (out / "model.json").write_text(json.dumps(card, indent=2) + "\n")
    size = sum(p.stat().st_size for p in out.rglob("*") if p.is_file()) / 2**20
    print(f"packaged {out} ({size:.1f} MB), lora = {chosen}")


if __name__ == "__main__":
    main()
