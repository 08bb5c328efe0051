"""The ``ranksam`` command: train, eval, demo, export, make-bag, bench.

Each subcommand parses its arguments and hands over to the module that owns the work;
heavy imports happen inside the handlers so ``ranksam --help`` stays fast.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from ranksam_ros.cli_options import add_dataclass_flags, dataclass_from_args
from ranksam_ros.config import EXPORT_OPSET, EXPORT_PRECISIONS, PRECISIONS, BackendConfig
from ranksam_ros.node_config import NodeConfig


def _cmd_train(args: argparse.Namespace) -> int:
    from ranksam_ros.config_loader import load_config
    from ranksam_ros.train.config import TrainConfig
    from ranksam_ros.train.loop import Trainer

    overrides = list(args.set or [])
    if args.data:
        overrides.append(f"data.root={args.data}")
    if args.out:
        overrides.append(f"out_dir={args.out}")
    cfg = load_config(TrainConfig, args.config, overrides)
    path = Trainer(cfg).train()
    if int(os.environ.get("RANK", "0")) == 0:
        print(f"wrote {path}")
    return 0


def _cmd_eval(args: argparse.Namespace) -> int:
    from ranksam_ros.eval.evaluate import evaluate, format_report
    from ranksam_ros.eval.options import EvalOptions

    report = evaluate(dataclass_from_args(EvalOptions, args))
    print(format_report(report))
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(report, indent=2) + "\n")
    return 0


def _cmd_demo(args: argparse.Namespace) -> int:
    from ranksam_ros.demo import run_demo

    live = False if args.offline else None
    run_demo(
        out_dir=args.out,
        model=args.model,
        adapter=args.adapter,
        rate=args.rate,
        duration=args.duration,
        live=live,
        depth=args.depth,
    )
    return 0


def _cmd_export(args: argparse.Namespace) -> int:
    from ranksam_ros.deploy.export import export_model

    if args.out is None:
        path = _export_to_cache(args)
    else:
        path = export_model(args.model, args.out, args.adapter, args.precision, args.opset)
        print(f"wrote {path}")
    manifest = json.loads(Path(path).read_text())
    for name, graph in manifest["graphs"].items():
        print(f"  {name:<16} {graph['file']:<24} sha256 {graph['sha256'][:12]}")
    if "int8" in manifest:
        int8 = manifest["int8"]
        verdict = "accepted" if int8["accepted"] else "REJECTED (stays off)"
        from ranksam_ros.deploy.quantize import parity_summary

        print(f"  int8 encoder: {parity_summary(int8)} -> {verdict}")
    return 0


def _export_to_cache(args: argparse.Namespace) -> Path:
    """``ranksam export`` without ``--out``: the cached export engines look up by model name."""
    from ranksam_ros.deploy.cache import cache_dir_for, cached_export, is_export_dir

    # int8 in the cache: the fp32 graphs plus the quantised encoder.
    if args.precision not in PRECISIONS or args.opset != EXPORT_OPSET:
        raise ValueError(
            f"the cache holds {' and '.join(PRECISIONS)} opset-{EXPORT_OPSET} exports "
            "(what engines look up by model name): pass --out DIR for another --precision "
            "or --opset"
        )
    existed = is_export_dir(cache_dir_for(args.model, args.adapter, args.precision))
    directory = cached_export(args.model, args.adapter, args.precision)
    print(f"{'already in' if existed else 'wrote'} the cache: {directory}")
    return directory / "manifest.json"


def _cmd_make_bag(args: argparse.Namespace) -> int:
    from ranksam_ros.bench.bag_writer import make_bag

    summary = make_bag(
        args.images,
        args.out,
        args.rate,
        labels=args.labels,
        compressed=args.compressed,
        storage=args.storage,
        topic=args.topic,
        label_topic=args.label_topic,
        frame_id=args.frame_id,
        overwrite=args.overwrite,
        depth=args.depth,
        depth_topic=args.depth_topic,
        info_topic=args.info_topic,
        camera_info=args.camera_info,
        fov_deg=args.fov,
    )
    print(f"wrote {summary['path']} ({summary['storage']}, {summary['frames']} frames)")
    for topic, info in summary["topics"].items():
        print(f"  {topic:<32} {info['type']:<32} {info['count']} msgs")
    return 0


def _cmd_bench(args: argparse.Namespace) -> int:
    from ranksam_ros.bench.options import BenchOptions
    from ranksam_ros.bench.report import format_summary
    from ranksam_ros.bench.runner import run_bench

    options = dataclass_from_args(BenchOptions, args)
    report = run_bench(options)
    if options.offline:
        print(json.dumps({k: v for k, v in report.items() if k != "metadata"}, indent=2))
    else:
        print(format_summary(report))
    if options.json:
        print(f"wrote {options.json}")
    return 0


def _add_make_bag(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "make-bag", help="write an image folder as a rosbag2 camera stream", allow_abbrev=False
    )
    p.add_argument("--images", required=True, help="folder of images (sorted by name)")
    p.add_argument("--labels", help="folder of label PNGs with the images' stems (mono8 topic)")
    p.add_argument("--out", required=True, help="bag directory, or a .mcap / .db3 file")
    p.add_argument("--rate", type=float, required=True, help="frames per second (stamps)")
    p.add_argument("--compressed", action="store_true", help="CompressedImage JPEG frames")
    p.add_argument("--storage", choices=["mcap", "sqlite3"], help="default: from --out, else mcap")
    p.add_argument("--topic", help="camera topic (default /camera/image_raw[/compressed])")
    p.add_argument("--label-topic", default="/camera/labels")
    p.add_argument(
        "--depth",
        help="folder of depth files aligned to the images, same stems: 16-bit PNG in mm or "
        ".npy (float m / uint16 mm); adds a depth and a camera_info topic",
    )
    p.add_argument("--depth-topic", default="/camera/depth")
    p.add_argument("--info-topic", default="/camera/camera_info")
    p.add_argument("--camera-info", help="ROS calibration YAML giving K (with --depth)")
    p.add_argument(
        "--fov", type=float, default=60.0, help="without --camera-info: pinhole FOV (deg)"
    )
    p.add_argument("--frame-id", default="camera")
    p.add_argument("--overwrite", action="store_true", help="replace an existing --out")
    p.set_defaults(func=_cmd_make_bag)


def _add_bench(sub: argparse._SubParsersAction) -> None:
    from ranksam_ros.bench.options import BenchOptions

    p = sub.add_parser(
        "bench", help="replay a bag through the node and measure it", allow_abbrev=False
    )
    add_dataclass_flags(p, BenchOptions)
    p.set_defaults(func=_cmd_bench)


def _add_export(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("export", help="export ONNX graphs and a manifest", allow_abbrev=False)
    p.add_argument("--model", default=BackendConfig.model, help="name or path")
    p.add_argument(
        "--out",
        help="output directory (default: the export cache, for a shipped model, where "
        "onnxruntime/tensorrt backends find it by model name)",
    )
    p.add_argument("--adapter", default=BackendConfig.adapter, help="adapter name or file, or none")
    p.add_argument("--precision", default=EXPORT_PRECISIONS[0], choices=EXPORT_PRECISIONS)
    p.add_argument("--opset", type=int, default=EXPORT_OPSET)
    p.set_defaults(func=_cmd_export)


def _add_train(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("train", help="train the foundation or an adapter set", allow_abbrev=False)
    p.add_argument("--config", required=True, help="YAML file (config/train/*.yaml)")
    p.add_argument("--data", help="dataset root holding train/ and val/ (sets data.root)")
    p.add_argument("--out", help="output directory (sets out_dir)")
    p.add_argument("--set", action="append", metavar="KEY=VALUE", help="override a config key")
    p.set_defaults(func=_cmd_train)


def _add_eval(sub: argparse._SubParsersAction) -> None:
    from ranksam_ros.eval.options import EvalOptions

    p = sub.add_parser(
        "eval", help="evaluate on a folder with images/ and labels/", allow_abbrev=False
    )
    add_dataclass_flags(p, EvalOptions)
    p.add_argument("--json", help="also write the report here")
    p.set_defaults(func=_cmd_eval)


def _add_demo(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "demo", help="replay the bundled frames through the node, draw overlays", allow_abbrev=False
    )
    p.add_argument("--out", default="out/demo")
    p.add_argument("--model", default=NodeConfig.model, help="shipped name or model directory")
    p.add_argument("--adapter", default=NodeConfig.adapter, help="adapter name or file, or none")
    p.add_argument("--rate", type=float, default=2.0, help="looping input rate (Hz)")
    p.add_argument("--duration", type=float, default=10.0, help="seconds of replay")
    p.add_argument("--offline", action="store_true", help="skip ROS 2: segment in-process only")
    p.add_argument(
        "--depth", help="depth files aligned to the frames (see make-bag --depth): 3D in the node"
    )
    p.set_defaults(func=_cmd_demo)


def build_parser() -> argparse.ArgumentParser:
    # allow_abbrev=False everywhere: a typo such as --mode must not be taken for --model.
    parser = argparse.ArgumentParser(
        prog="ranksam", description=__doc__.splitlines()[0], allow_abbrev=False
    )
    sub = parser.add_subparsers(dest="command", required=True)
    _add_train(sub)
    _add_eval(sub)
    _add_demo(sub)
    _add_export(sub)
    _add_make_bag(sub)
    _add_bench(sub)
    from ranksam_ros.deploy.trt_cli import add_trt_commands

    add_trt_commands(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``ranksam`` console script."""
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except (ValueError, FileNotFoundError, ImportError, RuntimeError) as exc:
        print(f"ranksam {args.command}: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
