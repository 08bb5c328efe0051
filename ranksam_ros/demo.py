"""``ranksam demo``: the bundled CamVid frames through the ROS 2 node, measured and drawn.

With ROS 2 importable (rclpy, ranksam_msgs, rosbags, psutil) the demo writes the frames as a
small bag (``out/demo/demo.mcap``), replays it in a loop through the ``ranksam`` node running
as its own process, and reports fps and latency from the benchmark harness; an in-process pass
over the same frames gives the semantic mIoU and the overlays. Without ROS 2 it segments the
frames offline only. Either way it writes overlays per frame and a contact sheet.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from PIL import Image

from ranksam_ros.config import BackendConfig, DataConfig, PipelineConfig
from ranksam_ros.data.folder import BUNDLED_FRAMES, SegmentationFolder

SHEET_FRAMES = 9


def check_model(model: str, adapter: str) -> Path:
    """The model directory; clear errors when the model, its predictor or adapter is missing.

    Raises:
        FileNotFoundError: Nothing usable for ``model`` / ``adapter``.
    """
    from ranksam_ros.modeling.registry import MODELS_DIR, resolve_model_dir, shipped_models

    model_dir = resolve_model_dir(model)
    if model_dir is None:
        shipped = ", ".join(shipped_models()) or "none installed yet"
        raise FileNotFoundError(
            f"model {model!r} not found: it is neither a model directory nor a shipped model "
            f"(looked in {MODELS_DIR}; shipped: {shipped}). Pass --model <model directory>."
        )
    if not (model_dir / "prompt_predictor.safetensors").is_file():
        raise FileNotFoundError(
            f"model {model_dir} has no prompt_predictor.safetensors: the demo needs a model "
            "that finds its own prompts"
        )
    if adapter != "none" and not Path(adapter).is_file():
        if not (model_dir / "adapters" / f"{adapter}.safetensors").is_file():
            available = sorted(p.stem for p in (model_dir / "adapters").glob("*.safetensors"))
            raise FileNotFoundError(
                f"model {model_dir.name} has no adapter {adapter!r} (available: "
                f"{', '.join(available) or 'none'}); pass --adapter none or a file"
            )
    return model_dir


def ros_available() -> bool:
    """True when the live demo can run (ROS 2 Python, our messages and rosbags)."""
    try:
        import rclpy  # noqa: F401
        import rosbags  # noqa: F401
        from ranksam_msgs.msg import SegmentationMasks  # noqa: F401
    except ImportError:
        return False
    return True


class OverlayWriter:
    """Saves one overlay PNG per frame and keeps the first ones for the contact sheet."""

    def __init__(self, out: Path, names: list[str]) -> None:
        self.folder = out / "overlays"
        self.folder.mkdir(parents=True, exist_ok=True)
        self.names = names
        self.sheet: list[np.ndarray] = []

    def __call__(self, index: int, image: np.ndarray, result) -> None:
        from ranksam_ros.pipeline.overlay import draw_overlay

        overlay = draw_overlay(image, result)
        Image.fromarray(overlay).save(self.folder / f"{self.names[index]}.png")
        if len(self.sheet) < SHEET_FRAMES:
            self.sheet.append(overlay)

    def write_sheet(self, path: Path) -> None:
        from ranksam_ros.pipeline.overlay import contact_sheet

        Image.fromarray(contact_sheet(self.sheet)).save(path)


def run_demo(
    out_dir: str | Path = "out/demo",
    model: str = BackendConfig.model,
    adapter: str = "gated",
    frames: str | Path = BUNDLED_FRAMES,
    backend: str = "torch",
    rate: float = 2.0,
    duration: float = 10.0,
    live: bool | None = None,
    depth: str | Path | None = None,
) -> dict:
    """Run the demo and return its summary.

    Args:
        out_dir: Output folder (created).
        model: Model name or directory (needs a prompt predictor).
        adapter: Adapter name or ``none``.
        frames: Folder with ``images/`` (and ``labels/`` for the mIoU).
        backend: Inference engine.
        rate: Looping input rate of the live replay (Hz).
        duration: Seconds of live replay.
        live: Force (True) or skip (False) the ROS 2 part; None = when importable.
        depth: Folder of depth files aligned to the frames (``ranksam make-bag --depth``):
            the live replay then sends depth and camera_info and the node measures 3D.
    """
    check_model(model, adapter)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    if live is None:
        live = ros_available()
        if not live:
            print("ROS 2 (rclpy, ranksam_msgs) or rosbags is not importable: offline demo only")
    if live:
        return run_live_demo(out, model, adapter, Path(frames), backend, rate, duration, depth)
    if depth is not None:
        print("--depth needs the live (ROS 2) demo: the offline demo ignores it")
    return run_offline_demo(out, model, adapter, Path(frames), backend)


def run_live_demo(
    out: Path,
    model: str,
    adapter: str,
    frames: Path,
    backend: str,
    rate: float,
    duration: float,
    depth: str | Path | None = None,
) -> dict:
    """Bag -> node (own process) -> benchmark report, then an offline pass for mIoU/overlays."""
    from ranksam_ros.bench.bag_writer import make_bag
    from ranksam_ros.bench.bags import load_frames
    from ranksam_ros.bench.node_process import node_config, node_parameters
    from ranksam_ros.bench.offline import run_offline
    from ranksam_ros.bench.options import BenchOptions
    from ranksam_ros.bench.report import clean, write_report
    from ranksam_ros.bench.runner import load_labels, run_bench

    has_labels = (frames / "labels").is_dir()
    bag = out / "demo.mcap"
    labels = frames / "labels" if has_labels else None
    make_bag(
        frames / "images", bag, 15.0, labels=labels, compressed=True, overwrite=True, depth=depth
    )
    overrides = (f"model={model}", f"adapter={adapter}", f"backend={backend}")
    if depth is not None:
        overrides += ("depth.enabled=true",)
    options = BenchOptions(
        bag=str(bag),
        rates=(rate,),
        duration=duration,
        runs=1,
        warmup_s=1.0,
        json=str(out / "bench.json"),
        plots=str(out / "plots"),
        overrides=overrides,
        node_log=str(out / "node.log"),
    )
    report = run_bench(options)
    camera = load_frames(bag)
    names = [p.stem for p in sorted((frames / "images").iterdir())][: len(camera)]
    writer = OverlayWriter(out, names)
    cfg = node_config(node_parameters(None, list(overrides)))
    offline = run_offline(camera, cfg, load_labels(options), on_result=writer)
    writer.write_sheet(out / "contact_sheet.png")
    report["custom"]["offline"] = clean(offline)
    write_report(out / "bench.json", report)
    summary = _live_summary(report, offline)
    (out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    _print_live(summary, out)
    return summary


def _live_summary(report: dict, offline: dict) -> dict:
    keys = ("SENT_RATE_HZ", "RECEIVED_RATE_HZ", "MEAN_FRAME_RATE", "NUM_FRAMES_SENT")
    keys += ("NUM_MISSED_FRAMES", "LATENCY_P50", "LATENCY_P95", "LATENCY_P99")
    return {
        "model": report["metadata"].get("model_id") or offline["model_id"],
        "live": {key: report.get(key) for key in keys},
        "cold_start_s": report["custom"].get("cold_start_s"),
        "offline_median_ms": offline.get("MODEL_TIME_MEDIAN"),
        "semantic_miou": offline.get("semantic_miou"),
    }


def _print_live(summary: dict, out: Path) -> None:
    live = summary["live"]
    print(
        f"demo ({summary['model']}): {live['NUM_FRAMES_SENT']:.0f} frames sent, "
        f"{live['NUM_MISSED_FRAMES']:.0f} missed; fps in {live['SENT_RATE_HZ']:.2f}, "
        f"fps out {live['RECEIVED_RATE_HZ']:.2f}"
    )
    print(
        f"latency p50 {live['LATENCY_P50']:.1f} ms, p95 {live['LATENCY_P95']:.1f} ms, "
        f"p99 {live['LATENCY_P99']:.1f} ms (end to end, through DDS)"
    )
    if summary.get("semantic_miou") is not None:
        print(f"semantic mIoU on these frames: {summary['semantic_miou']:.3f}")
    print(
        f"wrote {out}/bench.json, {out}/plots/*.png, {out}/overlays/*.png, "
        f"{out}/contact_sheet.png, {out}/summary.json"
    )


def run_offline_demo(out: Path, model: str, adapter: str, frames: Path, backend: str) -> dict:
    """Segment every frame in this process; overlays, contact sheet and a summary."""
    from ranksam_ros.backends import create_backend
    from ranksam_ros.eval.confusion import ConfusionMatrix
    from ranksam_ros.pipeline.pipeline import Pipeline

    folder = SegmentationFolder(frames, require_labels=False)
    engine = BackendConfig(backend=backend, model=model, adapter=adapter)
    pipeline = Pipeline(create_backend(engine), PipelineConfig())
    writer = OverlayWriter(out, [folder.name(i) for i in range(len(folder))])
    # The bundled frames are CamVid's (DataConfig's default classes).
    confusion, frames_summary = ConfusionMatrix(DataConfig().num_classes), []
    for index in range(len(folder)):
        image, label = folder[index]
        result = pipeline(image)
        writer(index, image, result)
        if label is not None:
            confusion.add(label, result.semantic)
        frames_summary.append(_frame_summary(folder.name(index), result))
    writer.write_sheet(out / "contact_sheet.png")
    summary = {
        "model": pipeline.backend.info.model_id,
        "frames": frames_summary,
        "median_ms": float(np.median([f["total_ms"] for f in frames_summary])),
    }
    if confusion.matrix.sum():
        summary["semantic_miou"] = float(np.nanmean(confusion.class_iou()))
    (out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    print(f"wrote {out}/overlays/*.png, {out}/contact_sheet.png, {out}/summary.json")
    if "semantic_miou" in summary:
        print(f"semantic mIoU on these frames: {summary['semantic_miou']:.3f}")
    return summary


def _frame_summary(name: str, result) -> dict:
    total_ms = round(sum(result.timings_ms.values()), 1)
    print(
        f"{name}: {len(result.instances):2d} instances from {result.prompts_decoded:2d} prompts "
        f"({result.candidates} candidates), {total_ms:.0f} ms"
    )
    return {
        "frame": name,
        "instances": len(result.instances),
        "prompts_decoded": result.prompts_decoded,
        "candidates": result.candidates,
        "classes": sorted({inst.class_name for inst in result.instances}),
        "active_rank": result.active_rank,
        "total_ms": total_ms,
    }
