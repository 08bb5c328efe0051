"""``ranksam trt-check`` and ``ranksam build-engine``: argparse wiring and handlers.

``ranksam_ros.cli`` calls :func:`add_trt_commands`; heavy imports stay inside the handlers.
"""

from __future__ import annotations

import argparse
import shlex
import sys
from pathlib import Path

from ranksam_ros.config import ENGINE_PRECISIONS
from ranksam_ros.deploy.trt_ops import TRT_VERSIONS

# Comparisons yield BOOL: their precision can be pinned, their output type cannot.
_BOOL_OUTPUT_OPS = frozenset({"Greater", "GreaterOrEqual", "Less", "LessOrEqual", "Equal"})


def add_trt_commands(subparsers: argparse._SubParsersAction) -> None:
    """Register ``trt-check`` and ``build-engine`` on the main parser's subparsers."""
    p = subparsers.add_parser(
        "trt-check",
        help="check an export against the TensorRT ONNX parser (no GPU needed)",
        allow_abbrev=False,
    )
    p.add_argument("--export", required=True, help="export directory (ranksam export --out)")
    p.add_argument("--trt-version", default=TRT_VERSIONS[-1], choices=TRT_VERSIONS)
    p.set_defaults(func=_cmd_trt_check)

    p = subparsers.add_parser(
        "build-engine",
        help="build (or reuse) TensorRT engines of an export",
        allow_abbrev=False,
    )
    p.add_argument("--export", required=True, help="export directory (ranksam export --out)")
    p.add_argument("--precision", default=ENGINE_PRECISIONS[0], choices=ENGINE_PRECISIONS)
    p.add_argument("--cache", help="engine directory (default $RANKSAM_CACHE/engines)")
    p.add_argument("--max-prompts", type=int, default=128, help="decoder prompt batch max")
    p.add_argument("--opt-prompts", type=int, default=16, help="decoder prompt batch to tune for")
    p.add_argument("--max-points", type=int, default=8, help="points per prompt incl. padding")
    p.add_argument("--force", action="store_true", help="rebuild even if a cached engine matches")
    p.add_argument(
        "--print-trtexec",
        action="store_true",
        help="print equivalent trtexec commands instead of building (no TensorRT needed)",
    )
    p.set_defaults(func=_cmd_build_engine)


def _cmd_trt_check(args: argparse.Namespace) -> int:
    from ranksam_ros.deploy.trt_check import check_export

    report = check_export(args.export, args.trt_version)
    print(report.format())
    return 0 if report.ok else 1


def _sizes(args: argparse.Namespace) -> dict[str, tuple[int, ...]]:
    from ranksam_ros.deploy.trt_build import decoder_sizes

    return decoder_sizes(
        args.max_prompts, args.opt_prompts, (1, min(2, args.max_points), args.max_points)
    )


def _cmd_build_engine(args: argparse.Namespace) -> int:
    if args.print_trtexec:
        print("\n\n".join(trtexec_commands(args.export, args.precision, _sizes(args))))
        return 0
    from ranksam_ros.deploy import trt_build, trt_ops
    from ranksam_ros.deploy.trt_check import check_export

    try:
        trt_version, capability = trt_build.runtime_identity()
    except RuntimeError as exc:
        print(f"ranksam build-engine: error: {exc}", file=sys.stderr)
        return 2
    try:
        report = check_export(args.export, trt_ops.normalize_version(trt_version))
    except ValueError:
        report = None  # no parser table for this release: let the parser speak for itself
    if report is not None and not report.ok:
        print(report.format())
        return 1
    policy = "always" if args.force else "if_missing"
    print(f"TensorRT {trt_version}, GPU compute capability {capability}, {args.precision}")
    try:
        records = trt_build.build_export_engines(
            args.export, args.precision, args.cache, policy, _sizes(args)
        )
    except RuntimeError as exc:  # parser or builder failure, already logged by TensorRT
        print(f"ranksam build-engine: error: {exc}", file=sys.stderr)
        return 2
    for name, record in records.items():
        state = f"built in {record.seconds:.1f} s" if record.built else "cached"
        print(f"  {name:<16} {state:<16} {record.path}\n  {'':<16} key {record.key}")
    return 0


def trtexec_commands(export_dir: str | Path, precision: str, sizes: dict) -> list[str]:
    """``trtexec`` lines equivalent to ``ranksam build-engine`` (same shapes, fp32 layers).

    Engines written by trtexec carry no sidecar, so the backend's cache does not pick them
    up; they are for benchmarking and for checking the builder outside Python.
    """
    import onnx

    from ranksam_ros.deploy.onnx_graph import fp32_nodes
    from ranksam_ros.deploy.trt_build import export_profiles
    from ranksam_ros.graph.manifest import read_manifest

    export_dir = Path(export_dir)
    manifest = read_manifest(export_dir)
    lines = []
    for name, profile in export_profiles(export_dir, manifest, sizes).items():
        onnx_path = export_dir / manifest["graphs"][name]["file"]
        args = ["trtexec", f"--onnx={onnx_path}", f"--saveEngine={name}-{precision}.engine"]
        dynamic = {k: v for k, v in profile.items() if v[0] != v[2]}
        for flag, index in (("--minShapes", 0), ("--optShapes", 1), ("--maxShapes", 2)):
            if dynamic:
                spec = ",".join(f"{k}:{'x'.join(map(str, v[index]))}" for k, v in dynamic.items())
                args.append(f"{flag}={spec}")
        if precision == "fp16":
            model = onnx.load(str(onnx_path), load_external_data=False)
            ops = {node.name: node.op_type for node in model.graph.node}
            keep = fp32_nodes(model)
            args += ["--fp16", "--precisionConstraints=obey"]
            if keep:
                args.append("--layerPrecisions=" + ",".join(f"{n}:fp32" for n in keep))
                outs = [n for n in keep if ops[n] not in _BOOL_OUTPUT_OPS]
                args.append("--layerOutputTypes=" + ",".join(f"{n}:fp32" for n in outs))
        if precision == "fp32":
            args.append("--noTF32")
        args.append("--skipInference")
        lines.append(" \\\n  ".join(shlex.quote(a) for a in args))
    return lines
