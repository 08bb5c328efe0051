"""Per-stage time of the promptless pipeline in-process (no ROS): torch vs ONNX Runtime (fp32,
and its int8 encoder where the export's parity gate accepts it); panoptic output (the default:
SAM decodes only things, prompted with the box of each thing region of the semantic head's
class map; or a click at its centre; or clicks at the prompt predictor's peaks; or no decoder,
the regions themselves) vs instances of every class; the `stages` section of
docs/benchmarks.md. The ONNX exports go into the cache first (an explicit step: engines never
export).

    python scripts/bench_stages.py [--models camvid-tiny:gated,DIR:none]

Frames: the ten bundled CamVid val frames (480x360), each segmented twice after one warm-up
frame; medians per stage; 2 threads; backends measured one after the other.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

from ranksam_ros.backends import create_backend
from ranksam_ros.config import BackendConfig, PipelineConfig
from ranksam_ros.data.folder import BUNDLED_FRAMES, SegmentationFolder
from ranksam_ros.deploy.cache import cached_export
from ranksam_ros.graph.manifest import read_manifest
from ranksam_ros.pipeline.pipeline import Pipeline
from ranksam_ros.reporting import machine_description, update_section, write_json

ROOT = Path(__file__).resolve().parents[1]
STAGES = ("preprocess", "encoder", "prompt_predictor", "prompts", "decoder", "postprocess")
MODES = {
    "panoptic (default)": PipelineConfig(),
    "panoptic, thing clicks at region centres": PipelineConfig(thing_prompts="centre"),
    "panoptic, thing clicks at prompt-predictor peaks": PipelineConfig(thing_prompts="predictor"),
    "panoptic, thing regions (no decoder)": PipelineConfig(thing_masks="regions"),
    "instances": PipelineConfig(mode="instances"),
}
ENGINES = (("torch", "fp32"), ("onnxruntime", "fp32"), ("onnxruntime", "int8"))
INT8_MODES = ("panoptic (default)", "panoptic, thing regions (no decoder)")


def measure(pipeline: Pipeline, frames: list[np.ndarray], repeats: int) -> dict:
    pipeline(frames[0])  # warm-up
    totals, decoded, stages = [], [], {name: [] for name in STAGES}
    for image in frames * repeats:
        started = time.perf_counter()
        result = pipeline(image)
        totals.append(time.perf_counter() - started)
        decoded.append(result.prompts_decoded)
        for name in STAGES:
            stages[name].append(result.timings_ms.get(name, 0.0))
    total_ms = 1000 * float(np.median(totals))
    return {
        "total_ms": total_ms,
        "fps": 1000 / total_ms,
        "prompts_decoded": float(np.mean(decoded)),
        "stages_ms": {name: float(np.median(v)) for name, v in stages.items()},
    }


def median_of_rounds(rounds: list[dict]) -> dict:
    """One row from several rounds: medians of total and stage times."""
    total_ms = float(np.median([r["total_ms"] for r in rounds]))
    return {
        "total_ms": total_ms,
        "fps": 1000 / total_ms,
        "prompts_decoded": float(np.mean([r["prompts_decoded"] for r in rounds])),
        "stages_ms": {s: float(np.median([r["stages_ms"][s] for r in rounds])) for s in STAGES},
        "rounds_total_ms": [r["total_ms"] for r in rounds],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0], allow_abbrev=False)
    parser.add_argument(
        "--models",
        default="camvid-tiny:gated",
        help="comma-separated MODEL:ADAPTER pairs, measured one after the other",
    )
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument(
        "--rounds", type=int, default=3, help="rounds over every row; medians of the rounds"
    )
    parser.add_argument("--docs", default=str(ROOT / "docs"))
    args = parser.parse_args()
    folder = SegmentationFolder(BUNDLED_FRAMES)
    frames = [folder[i][0] for i in range(len(folder))]
    pipelines: dict[str, Pipeline] = {}
    for pair in args.models.split(","):
        model, adapter = pair.rsplit(":", 1)
        cached_export(model, adapter)
        int8 = read_manifest(cached_export(model, adapter, "int8")).get("int8", {})
        for name, precision in ENGINES:
            if precision == "int8" and not int8.get("accepted"):
                print(f"{model} + {adapter}: int8 encoder rejected by its parity gate, not timed")
                continue
            backend = create_backend(
                BackendConfig(
                    backend=name, model=model, adapter=adapter, threads=2, precision=precision
                )
            )
            modes = MODES if backend.info.semantic_head else {"instances": MODES["instances"]}
            if precision == "int8":  # the fastest outputs only: int8 is for the speed budget
                modes = {k: v for k, v in modes.items() if k in INT8_MODES} or modes
            engine = name if precision == "fp32" else f"{name} {precision}"
            for mode, cfg in modes.items():
                pipelines[f"{Path(model).name} + {adapter}, {engine}, {mode}"] = Pipeline(
                    backend, cfg
                )
    # Rows interleaved round by round, so a slow spell of a shared machine hits every row.
    rounds = [
        {label: measure(pipe, frames, args.repeats) for label, pipe in pipelines.items()}
        for _ in range(args.rounds)
    ]
    results = {label: median_of_rounds([r[label] for r in rounds]) for label in pipelines}
    docs = Path(args.docs)
    write_json(docs / "results" / "stages.json", results)
    rows = [
        "| model + adapter, backend, output | total ms | fps | prompts decoded | "
        + " | ".join(STAGES)
        + " |",
        "|---|---|---|---|" + "---|" * len(STAGES),
    ]
    for label, r in results.items():
        cells = " | ".join(f"{r['stages_ms'][s]:.1f}" for s in STAGES)
        rows.append(
            f"| {label} | {r['total_ms']:.0f} | {r['fps']:.1f} | {r['prompts_decoded']:.1f} | {cells} |"
        )
    body = (
        "Promptless, in-process (no ROS), the ten bundled 480x360 frames, median ms per stage, "
        f"median of {args.rounds} interleaved rounds, 2 threads, {machine_description()}. "
        f"Command: `python scripts/bench_stages.py --models {args.models} --rounds {args.rounds}`."
        "\n\n" + "\n".join(rows) + "\n"
    )
    update_section(docs / "benchmarks.md", "stages", body)
    print(body)


if __name__ == "__main__":
    main()
