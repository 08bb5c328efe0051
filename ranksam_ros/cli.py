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


def _cmd_train(args: argparse.Namespace) -> int:
    from ranksam_ros.config import TrainConfig
    from ranksam_ros.config_loader import load_config
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
    from ranksam_ros.train.evaluate import EvalOptions, evaluate, format_report

    options = EvalOptions(
        model=args.model,
        data=args.data,
        adapter=args.adapter,
        prompts=args.prompts,
        degrade=args.degrade,
        seed=args.seed,
        limit=args.limit,
        backend=args.backend,
        threads=args.threads,
        pipeline_overrides=tuple(args.set or ()),
    )
    report = evaluate(options)
    print(format_report(report))
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(report, indent=2) + "\n")
    return 0


def _cmd_demo(args: argparse.Namespace) -> int:
    from ranksam_ros.demo import run_demo

    run_demo(out_dir=args.out, model=args.model, adapter=args.adapter)
    return 0


def _cmd_export(args: argparse.Namespace) -> int:
    from ranksam_ros.deploy.export import export_model

    path = export_model(args.model, args.out, args.adapter, args.precision, args.opset)
    manifest = json.loads(Path(path).read_text())
    print(f"wrote {path}")
    for name, graph in manifest["graphs"].items():
        print(f"  {name:<16} {graph['file']:<24} sha256 {graph['sha256'][:12]}")
    if "int8" in manifest:
        int8 = manifest["int8"]
        verdict = "accepted" if int8["accepted"] else "REJECTED (stays off)"
        print(f"  int8 encoder: mask IoU vs fp32 {int8['mask_iou_vs_fp32']:.4f} -> {verdict}")
    return 0


def _add_export(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("export", help="export ONNX graphs and a manifest")
    p.add_argument("--model", default="camvid-tiny", help="name or path")
    p.add_argument("--out", required=True, help="output directory")
    p.add_argument("--adapter", default="none", help="adapter name or file, or none")
    p.add_argument("--precision", default="fp32", choices=["fp32", "fp16", "int8"])
    p.add_argument("--opset", type=int, default=17)
    p.set_defaults(func=_cmd_export)


def _add_train(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("train", help="train the foundation or an adapter set")
    p.add_argument("--config", required=True, help="YAML file (config/train/*.yaml)")
    p.add_argument("--data", help="dataset root holding train/ and val/ (sets data.root)")
    p.add_argument("--out", help="output directory (sets out_dir)")
    p.add_argument("--set", action="append", metavar="KEY=VALUE", help="override a config key")
    p.set_defaults(func=_cmd_train)


def _add_eval(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("eval", help="evaluate on a folder with images/ and labels/")
    p.add_argument("--model", default="camvid-tiny", help="name or path (default camvid-tiny)")
    p.add_argument("--data", required=True, help="folder holding images/ and labels/")
    p.add_argument("--adapter", default="none", help="adapter name or file, or none")
    p.add_argument("--prompts", default="box", choices=["box", "auto", "grid"])
    p.add_argument(
        "--degrade",
        default="none",
        choices=["none", "noise", "blur", "lowlight", "fog", "motion", "mixed"],
    )
    p.add_argument("--backend", default="torch", choices=["torch", "onnxruntime", "tensorrt"])
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--limit", type=int, default=0, help="evaluate only the first N frames")
    p.add_argument("--threads", type=int, default=0, help="CPU threads (0 = all cores)")
    p.add_argument("--json", help="also write the report here")
    p.add_argument(
        "--set", action="append", metavar="KEY=VALUE", help="override a pipeline config key"
    )
    p.set_defaults(func=_cmd_eval)


def _add_demo(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("demo", help="segment the bundled frames and write overlays")
    p.add_argument("--out", default="out/demo")
    p.add_argument("--model", default="camvid-tiny")
    p.add_argument("--adapter", default="gated")
    p.set_defaults(func=_cmd_demo)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="ranksam", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    _add_train(sub)
    _add_eval(sub)
    _add_demo(sub)
    _add_export(sub)
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
