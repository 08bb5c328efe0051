"""PA-SAM against its honest control, three seeds: the `pa_sam` section of docs/results.md.

Each seed trains the decoder parts PA-SAM retrains (upscaling, hypernetworks, mask tokens) for
the same steps with the prompt adapter (config/train/prompt_adapter.yaml -> runs/pa_sam_s<k>)
and without it (config/train/decoder_parts.yaml -> runs/decoder_parts_s<k>). Box and click
prompts are scored on the held-out sequence and on val: mIoU and boundary IoU (dilation ratio
0.02 and 0.01); the table gives adapter - control per seed and the mean with its spread. The
decoder's extra time is measured per prompt and per frame in torch and ONNX Runtime.

    python scripts/results_pa_sam.py --data ../shared/data/camvid --runs runs --limit 40
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from ranksam_ros.backends.onnx_backend import OnnxBackend
from ranksam_ros.backends.torch_backend import TorchBackend
from ranksam_ros.deploy.export import export_model
from ranksam_ros.eval.evaluate import evaluate
from ranksam_ros.eval.options import EvalOptions
from ranksam_ros.graph.prompts import boxes_to_prompts
from ranksam_ros.modeling.registry import build_model
from ranksam_ros.reporting import machine_description, update_section, write_json

ROOT = Path(__file__).resolve().parents[1]
SEEDS = (1, 2, 3)
METRICS = ("miou", "boundary_iou", "boundary_iou_001")
SPLITS = {
    "held-out 0006R0": lambda root: {"data": str(root / "train"), "sequences": ("0006R0",)},
    "val": lambda root: {"data": str(root / "val")},
}


def variants(runs: Path, seed: int, foundation: str) -> dict[str, tuple[str, str]]:
    """``{name: (model file, adapter file or none)}`` of one seed.

    The PA-SAM file carries the decoder parts it retrained, so it loads onto the foundation.
    """
    return {
        "control": (str(runs / f"decoder_parts_s{seed}" / "model.safetensors"), "none"),
        "pa_sam": (foundation, str(runs / f"pa_sam_s{seed}" / "adapter.safetensors")),
    }


def score(model: str, adapter: str, root: Path, limit: int) -> dict:
    """``{split: {prompts: report}}``."""
    backend = TorchBackend(build_model(model, adapter=adapter), threads=2)
    out = {}
    for split, fields in SPLITS.items():
        out[split] = {}
        for prompts in ("box", "point"):
            options = EvalOptions(
                model=model, adapter=adapter, prompts=prompts, limit=limit, **fields(root)
            )
            report = evaluate(options, backend)  # once: every metric comes from the same pass
            out[split][prompts] = {k: report[k] for k in METRICS}
    return out


def _spread(gains: np.ndarray) -> str:
    """Sample standard deviation of the gains, or n/a for one seed."""
    return f"{gains.std(ddof=1):.2f}" if len(gains) > 1 else "n/a (one seed)"


def decoder_ms(model: str, adapter: str, prompts: int = 16, runs: int = 20) -> dict:
    """Median ms of one decoder call on ``prompts`` boxes, torch and ONNX Runtime, 2 threads."""
    torch.set_num_threads(2)
    boxes = np.tile(np.array([[40.0, 60.0, 200.0, 220.0]], np.float32), (prompts, 1))
    coords, labels = boxes_to_prompts(boxes)
    image = np.random.default_rng(0).normal(size=(1, 3, 384, 384)).astype(np.float32)
    with tempfile.TemporaryDirectory() as tmp:
        directory = Path(tmp) / "model"
        (directory / "adapters").mkdir(parents=True)
        Path(directory / "model.safetensors").symlink_to(Path(model).resolve())
        if adapter != "none":
            Path(directory / "adapters" / "pa.safetensors").symlink_to(Path(adapter).resolve())
        name = "pa" if adapter != "none" else "none"
        export_model(str(directory), Path(tmp) / "export", adapter=name)
        engines = {
            "torch": TorchBackend(build_model(str(directory), adapter=name), threads=2),
            "onnxruntime": OnnxBackend(Path(tmp) / "export", threads=2),
        }
        out = {}
        for engine, backend in engines.items():
            encoded = backend.encode(image)
            backend.decode(encoded, coords, labels, False)
            times = []
            for _ in range(runs):
                started = time.perf_counter()
                backend.decode(encoded, coords, labels, False)
                times.append(time.perf_counter() - started)
            out[engine] = 1000 * float(np.median(times))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0], allow_abbrev=False)
    parser.add_argument("--data", required=True, help="CamVid root (train/ and val/)")
    parser.add_argument("--runs", default="runs")
    parser.add_argument(
        "--foundation",
        default=str(ROOT / "ranksam_ros/models/camvid-tiny/model.safetensors"),
        help="the model file both variants started from",
    )
    parser.add_argument("--limit", type=int, default=40)
    parser.add_argument(
        "--seeds", default=",".join(map(str, SEEDS)), help="comma-separated seeds of the runs"
    )
    parser.add_argument("--docs", default=str(ROOT / "docs"))
    args = parser.parse_args()
    started, root, runs = time.perf_counter(), Path(args.data), Path(args.runs)
    seeds = tuple(int(s) for s in args.seeds.split(","))
    results = {
        seed: {
            name: score(*files, root, args.limit)
            for name, files in variants(runs, seed, args.foundation).items()
        }
        for seed in seeds
    }
    latency = {
        name: decoder_ms(*files)
        for name, files in variants(runs, seeds[0], args.foundation).items()
    }
    rows = [
        "| split, prompts | metric | control (mean) | PA-SAM (mean) | gain per seed | "
        "mean gain ± std |",
        "|---|---|---|---|---|---|",
    ]
    for split in SPLITS:
        for prompts in ("box", "point"):
            for metric in METRICS:
                control = [results[s]["control"][split][prompts][metric] for s in seeds]
                adapter = [results[s]["pa_sam"][split][prompts][metric] for s in seeds]
                gains = 100 * (np.asarray(adapter) - np.asarray(control))
                rows.append(
                    f"| {split}, {prompts} | {metric} | {100 * np.mean(control):.2f} | "
                    f"{100 * np.mean(adapter):.2f} | "
                    + " / ".join(f"{g:+.2f}" for g in gains)
                    + f" | {gains.mean():+.2f} ± {_spread(gains)} |"
                )
    docs = Path(args.docs)
    write_json(docs / "results" / "pa_sam.json", {"scores": results, "decoder_ms": latency})
    timing = ", ".join(
        f"{engine} {latency['control'][engine]:.1f} -> {latency['pa_sam'][engine]:.1f} ms"
        for engine in latency["control"]
    )
    body = (
        f"PA-SAM prompt adapter against the same decoder parts trained without it, seeds "
        f"{', '.join(map(str, seeds))}, {args.limit} frames per split, mean segment IoU and "
        "boundary IoU (%) over segments >= 64 px. Decoder call on 16 box prompts (2 threads): "
        f"{timing}. Command: `python scripts/results_pa_sam.py --data <camvid> --runs runs "
        f"--limit {args.limit} --seeds {args.seeds}` ({(time.perf_counter() - started) / 60:.0f} min on "
        f"{machine_description()}).\n\n" + "\n".join(rows) + "\n"
    )
    update_section(docs / "results.md", "pa_sam", body)
    print(body)


if __name__ == "__main__":
    main()
