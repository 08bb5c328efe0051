"""Image-encoder time per 480x360 frame, SAM's ViT (tiny384, the first foundation) beside the
convolutional encoder (conv384, foundation 2), plain and with gated adapters, in PyTorch and
ONNX Runtime on 2 threads; the `encoders` section of docs/benchmarks.md.

    python scripts/bench_encoders.py [--rounds 7] [--runs 10]

Weights are random (time does not depend on them); gated adapters are injected with the
shipped configs and their gates start open, the most expensive case. Variants are measured
interleaved: every round times each variant ``--runs`` times (after a warm-up) and keeps the
median, and the table reports the median over rounds and the conv/ViT ratio of each round.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from ranksam_ros.adapters.gated_rank import GatedRankConfig
from ranksam_ros.adapters.inject import inject_adapters
from ranksam_ros.adapters.io import save_adapters
from ranksam_ros.backends.onnx_backend import OnnxBackend
from ranksam_ros.backends.torch_backend import TorchBackend
from ranksam_ros.data.folder import BUNDLED_FRAMES, SegmentationFolder
from ranksam_ros.deploy.export import export_model
from ranksam_ros.graph.preprocess import preprocess
from ranksam_ros.modeling.registry import build_model, save_model
from ranksam_ros.reporting import machine_description, update_section, write_json

ROOT = Path(__file__).resolve().parents[1]
ENCODERS = {"ViT (tiny384)": "tiny384", "conv (conv384)": "conv384"}
GATED = {  # the shipped adapter placements of each encoder
    "tiny384": GatedRankConfig(target_modules=("attn.qkv", "attn.proj")),
    "conv384": GatedRankConfig(target_modules=("block.3", "block.5")),
}


def model_dir(preset: str, root: Path) -> Path:
    """A model directory of ``preset`` with random weights and a gated adapter file."""
    path = root / preset
    (path / "adapters").mkdir(parents=True)
    model = build_model(preset)
    save_model(path / "model.safetensors", model)
    inject_adapters(model.sam.image_encoder, GATED[preset])
    save_adapters(path / "adapters" / "gated.safetensors", model.sam.image_encoder, GATED[preset])
    return path


def engines(root: Path) -> dict:
    """``{(encoder, adapter, engine): backend}`` for every variant."""
    found = {}
    for label, preset in ENCODERS.items():
        path = model_dir(preset, root)
        for adapter in ("none", "gated"):
            found[(label, adapter, "torch")] = TorchBackend(
                build_model(str(path), adapter=adapter), threads=2
            )
            out = root / f"{preset}-{adapter}"
            export_model(str(path), out, adapter=adapter)
            found[(label, adapter, "onnxruntime")] = OnnxBackend(out, threads=2)
    return found


def time_encoder(backend, tensor: np.ndarray, runs: int) -> float:
    backend.encode(tensor)  # warm-up
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        backend.encode(tensor)
        times.append(time.perf_counter() - started)
    return 1000 * float(np.median(times))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--docs", default=str(ROOT / "docs"))
    args = parser.parse_args()
    torch.set_num_threads(2)
    image = SegmentationFolder(BUNDLED_FRAMES)[0][0]
    with tempfile.TemporaryDirectory() as tmp:
        backends = engines(Path(tmp))
        tensors = {
            key: preprocess(image, b.info.input_size, b.info.pixel_mean, b.info.pixel_std)[0]
            for key, b in backends.items()
        }
        rounds = {key: [] for key in backends}
        for _ in range(args.rounds):
            for key, backend in backends.items():
                rounds[key].append(time_encoder(backend, tensors[key], args.runs))
    vit, conv = ENCODERS
    rows = [
        "| adapter, engine | ViT ms | conv ms | conv / ViT (median of rounds) |",
        "|---|---|---|---|",
    ]
    results = {}
    for adapter in ("none", "gated"):
        for engine in ("torch", "onnxruntime"):
            a, b = rounds[(vit, adapter, engine)], rounds[(conv, adapter, engine)]
            ratio = float(np.median(np.asarray(b) / np.asarray(a)))
            results[f"{adapter}, {engine}"] = {"vit_ms": a, "conv_ms": b, "ratio": ratio}
            rows.append(
                f"| {adapter}, {engine} | {np.median(a):.1f} | {np.median(b):.1f} | {ratio:.2f} |"
            )
    docs = Path(args.docs)
    write_json(docs / "results" / "encoders.json", results)
    body = (
        f"Image encoder per 480x360 frame (384x384 input), {args.rounds} interleaved rounds of "
        f"{args.runs} runs, median ms, 2 threads, {machine_description()}. Command: "
        f"`python scripts/bench_encoders.py --rounds {args.rounds} --runs {args.runs}`.\n\n"
        + "\n".join(rows)
        + "\n"
    )
    update_section(docs / "benchmarks.md", "encoders", body)
    print(body)


if __name__ == "__main__":
    main()
