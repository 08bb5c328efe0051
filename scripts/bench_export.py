"""Export benchmark: ONNX Runtime parity with PyTorch and encoder speed, side by side in one run.

    python scripts/bench_export.py --data ../shared/data/camvid/val          # camvid-tiny
    python scripts/bench_export.py --data ../shared/data/camvid/val --model camvid-conv
    python scripts/bench_export.py --vit-b                                     # vit_b, random weights

Parity (model + gated on val): embedding relative error, per-prompt mask IoU and box mIoU of
torch vs ORT fp32. Speed (2 threads, interleaved runs, median): torch eager vs ORT fp32 vs ORT
int8 encoders, and the gated-adapter overhead over the frozen encoder under ORT in fp32 and in
int8. Writes docs/results/bench_export*.json and the matching section of docs/benchmarks.md
(``bench_export`` for camvid-tiny, ``bench_export_<model>`` for another model).
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import numpy as np
import torch

from ranksam_ros.adapters.gated_rank import GatedRankConfig
from ranksam_ros.adapters.inject import inject_adapters, is_adapter_param
from ranksam_ros.adapters.io import save_adapters
from ranksam_ros.backends.onnx_backend import OnnxBackend
from ranksam_ros.backends.torch_backend import TorchBackend
from ranksam_ros.bench.timing import interleaved
from ranksam_ros.deploy.export import export_model
from ranksam_ros.deploy.quantize import parity_summary
from ranksam_ros.eval.evaluate import evaluate
from ranksam_ros.eval.options import EvalOptions
from ranksam_ros.modeling.registry import build_model, save_model
from ranksam_ros.reporting import machine_description, update_section, write_json

ROOT = Path(__file__).resolve().parents[1]
THREADS = 2
DEFAULT_RUNS = 7


def parity(model: str, adapter: str, export_dir: Path, data: str, limit: int) -> dict:
    """Torch vs ORT fp32 on val frames: embeddings, per-prompt masks and box mIoU."""
    from ranksam_ros.config import CAMVID_IGNORE_LABEL
    from ranksam_ros.data.folder import SegmentationFolder
    from ranksam_ros.data.segments import find_segments
    from ranksam_ros.graph.preprocess import preprocess
    from ranksam_ros.graph.prompts import boxes_to_prompts
    from ranksam_ros.pipeline.postprocess import upscale_logits

    reference = TorchBackend(build_model(model, adapter=adapter), threads=THREADS)
    ours = OnnxBackend(export_dir, threads=THREADS)
    info = reference.info
    folder = SegmentationFolder(data)
    count = min(limit or len(folder), len(folder))
    rel_errors, ious = [], []
    for index in range(count):
        image, label = folder[index]
        tensor, geometry = preprocess(image, info.input_size, info.pixel_mean, info.pixel_std)
        a, b = reference.encode(tensor), ours.encode(tensor)
        rel_errors.append(
            float(np.linalg.norm(a.embedding - b.embedding) / np.linalg.norm(a.embedding))
        )
        segments = find_segments(label, 11, 64, CAMVID_IGNORE_LABEL)
        boxes = np.array([s.box for s in segments], np.float64).reshape(-1, 2)
        coords, labels = boxes_to_prompts(geometry.to_input(boxes).reshape(-1, 4))
        masks = [
            upscale_logits(be.decode(e, coords, labels, False)[0][:, 0], geometry) > 0
            for be, e in ((reference, a), (ours, b))
        ]
        inter = np.logical_and(*masks).sum(axis=(1, 2))
        union = np.logical_or(*masks).sum(axis=(1, 2))
        ious.extend(np.where(union > 0, inter / np.maximum(union, 1), 1.0).tolist())
    backends = [("torch", reference), ("onnxruntime", ours)]
    if "encoder_int8" in ours.manifest["graphs"]:
        backends.append(("onnxruntime_int8", OnnxBackend(export_dir, threads=THREADS, int8=True)))
    miou = {
        name: evaluate(EvalOptions(model=model, data=data, adapter=adapter, limit=count), backend)[
            "miou"
        ]
        for name, backend in backends
    }
    return {
        "frames": count,
        "embedding_rel_error_max": max(rel_errors),
        "mask_iou_min": min(ious),
        "mask_iou_mean": float(np.mean(ious)),
        "prompts": len(ious),
        "miou_torch": miou["torch"],
        "miou_onnxruntime": miou["onnxruntime"],
        "miou_onnxruntime_int8": miou.get("onnxruntime_int8"),
    }


def encoder_speed(model: str, adapter: str, frozen_dir: Path, gated_dir: Path, runs: int) -> dict:
    """Interleaved encoder timings: torch eager, ORT fp32 and int8, each frozen and gated."""
    torch_backend = TorchBackend(build_model(model, adapter=adapter), threads=THREADS)
    frozen = OnnxBackend(frozen_dir, threads=THREADS)
    gated = OnnxBackend(gated_dir, threads=THREADS)
    calls = {"torch_eager": torch_backend, "ort_fp32_frozen": frozen, "ort_fp32_gated": gated}
    for name, backend in (("ort_int8_frozen", frozen), ("ort_int8_gated", gated)):
        if "encoder_int8" in backend.manifest["graphs"]:
            calls[name] = OnnxBackend(backend.export_dir, threads=THREADS, int8=True)
    size = torch_backend.info.input_size
    image = np.random.default_rng(0).normal(size=(1, 3, size, size)).astype(np.float32)
    timings = interleaved({k: (lambda b=b: b.encode(image)) for k, b in calls.items()}, runs=runs)
    out = {name: t.as_dict() for name, t in timings.items()}
    med = {name: t.median for name, t in timings.items()}
    out["ratios"] = {
        "ort_fp32_vs_torch": med["torch_eager"] / med["ort_fp32_gated"],
        "gated_overhead_ort": med["ort_fp32_gated"] / med["ort_fp32_frozen"] - 1.0,
    }
    if "ort_int8_gated" in med:
        out["ratios"]["int8_vs_fp32"] = med["ort_fp32_gated"] / med["ort_int8_gated"]
    if "ort_int8_gated" in med and "ort_int8_frozen" in med:
        out["ratios"]["gated_overhead_ort_int8"] = (
            med["ort_int8_gated"] / med["ort_int8_frozen"] - 1.0
        )
    out["int8_parity"] = gated.manifest.get("int8")
    return out


def random_gated_adapter(model_path: Path, out: Path) -> Path:
    """A gated adapter with random (non-zero) factors, for timing on random-weight models."""
    model = build_model(str(model_path))
    cfg = GatedRankConfig(rank_low=8, rank_high=32)
    inject_adapters(model.sam.image_encoder, cfg)
    with torch.no_grad():
        for name, param in model.named_parameters():
            if is_adapter_param(name) and "gated_fc" not in name:
                param.normal_(0, 0.02)
    save_adapters(out, model.sam.image_encoder, cfg)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0], allow_abbrev=False)
    parser.add_argument("--data", help="CamVid val folder (parity)")
    parser.add_argument("--model", default="camvid-tiny")
    parser.add_argument("--adapter", default="gated")
    parser.add_argument("--limit", type=int, default=0)
    parser.add_argument("--runs", type=int, default=DEFAULT_RUNS)
    parser.add_argument(
        "--vit-b", action="store_true", help="time a random-weight vit_b at 1024 px"
    )
    parser.add_argument("--docs", default=str(ROOT / "docs"))
    args = parser.parse_args()
    torch.set_num_threads(THREADS)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        if args.vit_b:
            model = str(tmp / "vit_b_random.safetensors")
            save_model(model, build_model("vit_b"))
            adapter = str(random_gated_adapter(Path(model), tmp / "gated.safetensors"))
            name, runs = "vit_b (random weights, 1024 px)", min(args.runs, 3)
        else:
            model, adapter, name, runs = (
                args.model,
                args.adapter,
                f"{args.model} + {args.adapter}",
                args.runs,
            )
        export_model(model, tmp / "frozen", adapter="none", precision="int8")
        export_model(model, tmp / "gated", adapter=adapter, precision="int8")
        report = {"model": name, "machine": machine_description(), "threads": THREADS}
        report["speed"] = encoder_speed(model, adapter, tmp / "frozen", tmp / "gated", runs)
        if args.data and not args.vit_b:
            report["parity"] = parity(model, adapter, tmp / "gated", args.data, args.limit)
    key = section_key(args)
    write_json(Path(args.docs) / "results" / f"{key}.json", report)
    update_section(Path(args.docs) / "benchmarks.md", key, render(report, args))
    print(render(report, args))


def section_key(args: argparse.Namespace) -> str:
    """Name of the report's JSON file and docs section."""
    if args.vit_b:
        return "bench_export_vit_b"
    name = Path(args.model).name  # a model directory or checkpoint path -> its last part
    suffix = "" if args.adapter == "gated" else f"_{Path(args.adapter).stem}"
    if name == "camvid-tiny" and not suffix:
        return "bench_export"
    return f"bench_export_{name}{suffix}"


def render(report: dict, args: argparse.Namespace) -> str:
    speed = report["speed"]
    lines = [
        f"**{report['model']}** — {report['machine']}, {report['threads']} threads, median of "
        f"{speed['torch_eager']['runs']} interleaved runs after 2 warm-ups. Command: "
        f"`python scripts/bench_export.py {'--vit-b' if args.vit_b else '--data <camvid>/val'}"
        f"{'' if args.vit_b or args.model == 'camvid-tiny' else f' --model {args.model}'}"
        f"{'' if args.vit_b or args.adapter == 'gated' else f' --adapter {args.adapter}'}"
        f"{'' if args.runs == DEFAULT_RUNS else f' --runs {args.runs}'}`.",
        "",
        "| encoder | median ms | min ms | CPU/wall |",
        "|---|---|---|---|",
    ]
    for name in (
        "torch_eager",
        "ort_fp32_frozen",
        "ort_fp32_gated",
        "ort_int8_frozen",
        "ort_int8_gated",
    ):
        if name in speed:
            t = speed[name]
            lines.append(
                f"| {name} | {1000 * t['median_s']:.1f} | {1000 * t['min_s']:.1f} | {t['cpu_per_wall']} |"
            )
    ratios = speed["ratios"]
    lines += [
        "",
        f"- ORT fp32 vs torch eager: **{ratios['ort_fp32_vs_torch']:.2f}x** faster (target >= 1.8x)",
    ]
    lines.append(
        f"- gated-adapter overhead under ORT: **{100 * ratios['gated_overhead_ort']:+.1f}%** (target <= 5%)"
    )
    if "gated_overhead_ort_int8" in ratios:
        overhead = 100 * ratios["gated_overhead_ort_int8"]
        lines.append(f"- gated-adapter overhead under ORT int8: **{overhead:+.1f}%**")
    if "int8_vs_fp32" in ratios:
        lines.append(f"- ORT int8 vs fp32: **{ratios['int8_vs_fp32']:.2f}x** (target >= 1.4x)")
    if speed.get("int8_parity"):
        p = speed["int8_parity"]
        verdict = "accepted" if p["accepted"] else "rejected"
        lines.append(f"- int8 parity gate: {parity_summary(p)} -> {verdict}")
    if "parity" in report:
        p = report["parity"]
        lines += [
            f"- parity on {p['frames']} val frames ({p['prompts']} box prompts): embedding rel. error max "
            f"{p['embedding_rel_error_max']:.2e} (target <= 1e-4); per-prompt mask IoU min {p['mask_iou_min']:.4f}, "
            f"mean {p['mask_iou_mean']:.5f} (target >= 0.99); box mIoU torch {p['miou_torch']:.4f} vs ORT "
            f"{p['miou_onnxruntime']:.4f}"
            + (
                f", ORT int8 {p['miou_onnxruntime_int8']:.4f}"
                if p.get("miou_onnxruntime_int8")
                else ""
            ),
        ]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
