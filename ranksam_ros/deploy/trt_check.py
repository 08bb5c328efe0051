"""``ranksam trt-check``: will the TensorRT ONNX parser of a given release take this export?

Runs without a GPU or TensorRT, from the ONNX files and the manifest alone, so an export can be
vetted on the PC before it is copied to a Jetson.  Per graph it checks (a) operator support,
(b) ops or shape inputs that make output shapes depend on tensor values, (c) that every IO
dimension is static except the dynamic axes the manifest declares, (d) the opset range and
(e) tensor data types.  The tables come from :mod:`ranksam_ros.deploy.trt_ops`.
"""

from __future__ import annotations

import itertools
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import onnx
from onnx import helper, shape_inference

from ranksam_ros.deploy import trt_ops
from ranksam_ros.deploy.onnx_graph import (
    constant_names,
    consumers,
    elem_types,
    probe_shapes,
    value_tainted_shape_inputs,
)
from ranksam_ros.graph.manifest import read_manifest

# Graphs TensorRT builds engines from; ORT-only graphs (the int8 encoder) are skipped.
TRT_GRAPHS = ("encoder", "prompt_predictor", "decoder")
# Two shape probes give every symbolic input dim different values (3, 5, 7... then +8), so an
# output dim that follows an input dim cannot look static by coincidence.
_PROBE_SHIFT = 8


@dataclass(frozen=True)
class Finding:
    """One result of a check: ``check`` names the rule, ``severity`` is error/warning/info."""

    check: str
    severity: str
    message: str


@dataclass
class GraphReport:
    """Findings for one graph, plus its operator histogram."""

    name: str
    file: str
    findings: list[Finding] = field(default_factory=list)
    op_counts: Counter = field(default_factory=Counter)

    @property
    def ok(self) -> bool:
        return not any(f.severity == "error" for f in self.findings)

    def add(self, check: str, severity: str, message: str) -> None:
        self.findings.append(Finding(check, severity, message))


@dataclass
class Report:
    """Readiness of an export for one TensorRT release."""

    export_dir: str
    trt_version: str
    graphs: list[GraphReport] = field(default_factory=list)
    skipped: dict[str, str] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return all(graph.ok for graph in self.graphs)

    def format(self) -> str:
        """Human-readable summary: one block per graph, errors first."""
        lines = [f"TensorRT {self.trt_version} readiness of {self.export_dir}"]
        for graph in self.graphs:
            status = "OK" if graph.ok else "FAIL"
            nodes = sum(graph.op_counts.values())
            lines.append(f"  {graph.name} ({graph.file}, {nodes} nodes): {status}")
            order = {"error": 0, "warning": 1, "info": 2}
            for finding in sorted(graph.findings, key=lambda f: order[f.severity]):
                lines.append(f"    {finding.severity:7s} [{finding.check}] {finding.message}")
        for name, why in self.skipped.items():
            lines.append(f"  {name}: skipped ({why})")
        lines.append("ready" if self.ok else "NOT ready: fix the errors above or re-export")
        return "\n".join(lines)


def check_export(export_dir: str | Path, trt_version: str = "10") -> Report:
    """Check every graph of an export against the parser of ``trt_version``.

    Args:
        export_dir: ``ranksam export`` output (manifest hashes are verified).
        trt_version: ``"8.6"`` or ``"10"`` (full versions such as ``"10.3.0"`` are accepted).

    Returns:
        The report; ``report.ok`` is False when any graph has an error.
    """
    version = trt_ops.normalize_version(trt_version)
    export_dir = Path(export_dir)
    manifest = read_manifest(export_dir)
    report = Report(str(export_dir), version)
    for name, entry in manifest["graphs"].items():
        if name not in TRT_GRAPHS:
            report.skipped[name] = "ONNX Runtime only; TensorRT builds from the fp32 graphs"
            continue
        model = onnx.load(str(export_dir / entry["file"]))
        report.graphs.append(
            check_graph(model, entry.get("dynamic_axes", {}), version, name, entry["file"])
        )
    return report


def check_graph(
    model: onnx.ModelProto,
    dynamic_axes: dict[str, dict],
    trt_version: str = "10",
    name: str = "graph",
    file: str = "",
) -> GraphReport:
    """Run checks (a)-(e) on one graph.

    Args:
        model: The ONNX model.
        dynamic_axes: ``{io name: {axis: dim name}}`` as in the manifest (axes may be str).
        trt_version: Parser table to use.
        name: Graph name for the report.
        file: File name for the report.
    """
    version = trt_ops.normalize_version(trt_version)
    report = GraphReport(name, file)
    report.op_counts = Counter(node.op_type for node in model.graph.node)
    declared = {io: {int(axis) for axis in axes} for io, axes in dynamic_axes.items()}
    _check_opset(model, version, report)
    _check_ops(model, version, report)
    _check_restrictions(model, version, report)
    _check_data_dependence(model, report)
    _check_dims(model, declared, report)
    _check_types(model, version, report)
    return report


def _check_opset(model: onnx.ModelProto, version: str, report: GraphReport) -> None:
    low, high = trt_ops.OPSET_RANGE[version]
    for entry in model.opset_import:
        if entry.domain in ("", "ai.onnx") and not low <= entry.version <= high:
            report.add(
                "opset", "error", f"opset {entry.version} outside {low}..{high} for {version}"
            )
        elif entry.domain not in ("", "ai.onnx"):
            report.add(
                "opset", "warning", f"custom domain {entry.domain!r} needs a TensorRT plugin"
            )


def _check_ops(model: onnx.ModelProto, version: str, report: GraphReport) -> None:
    counts: dict[str, Counter] = {"unsupported": Counter(), "later": Counter(), "plugin": Counter()}
    for node in model.graph.node:
        op = node.op_type
        if node.domain not in ("", "ai.onnx"):
            counts["plugin"][f"{node.domain}::{op}"] += 1
        elif op in trt_ops.ADDED_AFTER[version]:
            counts["later"][op] += 1
        elif op not in trt_ops.SUPPORTED[version]:
            counts["unsupported"][op] += 1
    for op, n in counts["unsupported"].items():
        why = "marked N" if op in trt_ops.UNSUPPORTED[version] else "not in the support matrix"
        report.add("ops", "error", f"{op} x{n}: {why} for TensorRT {version}")
    for op, n in counts["later"].items():
        since = trt_ops.ADDED_AFTER[version][op]
        report.add(
            "ops", "error", f"{op} x{n}: parsed only from TensorRT {since} (JetPack 6 has 10.3)"
        )
    for op, n in counts["plugin"].items():
        report.add("ops", "error", f"{op} x{n}: custom-domain op, needs a TensorRT plugin")


def _check_restrictions(model: onnx.ModelProto, version: str, report: GraphReport) -> None:
    rules = trt_ops.RESTRICTIONS[version]
    consts, cons = constant_names(model.graph), consumers(model.graph)
    bad: Counter = Counter()
    for node in model.graph.node:
        rule = rules.get(node.op_type)
        if rule is None:
            continue
        for index in rule.constant_inputs:
            if index < len(node.input) and node.input[index] and node.input[index] not in consts:
                bad[f"{node.op_type}: {rule.note} (e.g. {node.name})"] += 1
        if rule.no_ellipsis and not _einsum_ok(node):
            bad[f"{node.op_type}: {rule.note} (e.g. {node.name})"] += 1
        if rule.single_output and any(out in cons for out in node.output[1:]):
            bad[f"{node.op_type}: {rule.note} (e.g. {node.name})"] += 1
        if not _attrs_ok(node, rule.attrs):
            bad[f"{node.op_type}: {rule.note} (e.g. {node.name})"] += 1
    for message, n in bad.items():
        report.add("restriction", "error", f"{message} x{n}")


def _attrs_ok(node: onnx.NodeProto, allowed: tuple[tuple[str, tuple], ...]) -> bool:
    table = dict(allowed)
    for attr in node.attribute:
        if attr.name in table:
            value = helper.get_attribute_value(attr)
            value = value.decode() if isinstance(value, bytes) else value
            if value not in table[attr.name]:
                return False
    return True


def _einsum_ok(node: onnx.NodeProto) -> bool:
    equation = next((a.s.decode() for a in node.attribute if a.name == "equation"), "")
    operands = equation.replace(" ", "").split("->")[0].split(",")
    return "..." not in equation and all(len(set(op)) == len(op) for op in operands)


def _check_data_dependence(model: onnx.ModelProto, report: GraphReport) -> None:
    counts = Counter(node.op_type for node in model.graph.node)
    for op, what in trt_ops.DATA_DEPENDENT_SHAPE_OPS.items():
        if counts[op]:
            report.add("data-dependent", "error", f"{op} x{counts[op]}: output shape = {what}")
    for op in sorted(trt_ops.CONTROL_FLOW_OPS & set(counts)):
        report.add(
            "data-dependent", "warning", f"{op} x{counts[op]}: control flow, shapes may vary"
        )
    for node, source in value_tainted_shape_inputs(model.graph):
        report.add(
            "data-dependent",
            "error",
            f"{node.op_type} {node.name}: shape input computed from the values of {source!r}",
        )


def _check_dims(model: onnx.ModelProto, declared: dict[str, set[int]], report: GraphReport) -> None:
    graph = model.graph
    io_names = {v.name for v in [*graph.input, *graph.output]}
    for io in sorted(set(declared) - io_names):
        report.add(
            "dynamic-shape", "error", f"manifest declares axes of {io!r}, not a graph input/output"
        )
    symbols = sorted({d.dim_param for v in graph.input for d in _dims(v) if d.dim_param})
    probes = [{s: 3 + 2 * i + shift for i, s in enumerate(symbols)} for shift in (0, _PROBE_SHIFT)]
    inferred = [probe_shapes(model, dims) for dims in (probes if symbols else probes[:1])]
    for value in graph.input:
        for axis, dim in enumerate(_dims(value)):
            _check_input_axis(value.name, axis, dim, declared, report)
    for value in graph.output:
        for axis, dim in enumerate(_dims(value)):
            seen = [(shapes.get(value.name) or [])[axis : axis + 1] for shapes in inferred]
            _check_output_axis(value.name, axis, dim, seen, declared, report)


def _dims(value: onnx.ValueInfoProto) -> list:
    return list(value.type.tensor_type.shape.dim)


def _symbolic(dim) -> bool:
    return not dim.HasField("dim_value")


def _check_input_axis(name: str, axis: int, dim, declared: dict, report: GraphReport) -> None:
    is_declared = axis in declared.get(name, set())
    if _symbolic(dim) and not is_declared:
        label = dim.dim_param or "unnamed"
        report.add(
            "dynamic-shape",
            "error",
            f"input {name!r} axis {axis} is dynamic ({label!r}) but the manifest does not declare "
            "it: no TensorRT profile would cover it; re-export with a static size or declare it",
        )
    elif not _symbolic(dim) and is_declared:
        report.add(
            "dynamic-shape", "warning", f"input {name!r} axis {axis} declared dynamic but static"
        )


def _check_output_axis(
    name: str, axis: int, dim, seen: list, declared: dict, report: GraphReport
) -> None:
    if not _symbolic(dim) or axis in declared.get(name, set()):
        return
    values = [s[0] if s else None for s in seen]
    if None not in values and len(set(values)) == 1:
        report.add(
            "dynamic-shape",
            "info",
            f"output {name!r} axis {axis}: annotated {dim.dim_param!r}, static {values[0]}",
        )
        return
    what = "varies with the dynamic inputs" if None not in values else "cannot be proven static"
    report.add(
        "dynamic-shape",
        "error",
        f"output {name!r} axis {axis} ({dim.dim_param or 'unnamed'!r}) {what} but is not declared",
    )


def _check_types(model: onnx.ModelProto, version: str, report: GraphReport) -> None:
    try:
        typed = shape_inference.infer_shapes(model)
    except onnx.shape_inference.InferenceError:
        typed = model
    allowed = trt_ops.TENSOR_TYPES[version]
    bad: dict[str, list[str]] = {}
    for tensor, code, where in elem_types(typed):
        kind = trt_ops.ONNX_TYPES.get(code, f"type {code}")
        if code == 0:
            continue  # undefined: no information, not an error
        io_ok = kind in trt_ops.IO_ONLY_TYPES and where in ("input", "output")
        if kind in trt_ops.REJECTED_TYPES or (kind not in allowed and not io_ok):
            bad.setdefault(kind, []).append(f"{where} {tensor}")
    for kind, tensors in bad.items():
        shown = ", ".join(itertools.islice(tensors, 3))
        report.add(
            "dtype",
            "error",
            f"{kind} tensors ({len(tensors)}: {shown}) not handled by TensorRT {version}",
        )
    if version == "8.6":
        for value in [*model.graph.input, *model.graph.output]:
            if value.type.tensor_type.elem_type == onnx.TensorProto.INT64:
                report.add(
                    "dtype", "warning", f"{value.name!r} is INT64: TensorRT 8.6 binds it as INT32"
                )
