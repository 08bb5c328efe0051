"""TensorRT readiness check, engine cache keys and policy, the TensorRT backend (GPU part skips)."""

from __future__ import annotations

import argparse
import json
import logging
import shutil
import sys

import numpy as np
import onnx
import pytest
import torch
from onnx import TensorProto, helper

from ranksam_ros.adapters.gated_rank import GatedRankConfig
from ranksam_ros.adapters.inject import inject_adapters, is_adapter_param
from ranksam_ros.adapters.io import save_adapters
from ranksam_ros.backends import create_backend
from ranksam_ros.config import BackendConfig
from ranksam_ros.deploy import trt_build
from ranksam_ros.deploy.export import export_model
from ranksam_ros.deploy.onnx_graph import fp32_nodes
from ranksam_ros.deploy.trt_check import check_export, check_graph
from ranksam_ros.deploy.trt_cli import add_trt_commands
from ranksam_ros.graph import prompts as graph_prompts
from ranksam_ros.graph.manifest import read_manifest, write_manifest
from ranksam_ros.modeling.registry import save_model

IDENTITY = {"trt_version": "10.3.0", "compute_capability": "8.7"}


@pytest.fixture(scope="module")
def gated_export(tmp_path_factory, make_micro_model):
    """A real export of the micro model with gated adapters (fp32 graphs, no int8)."""
    torch.manual_seed(0)
    root = tmp_path_factory.mktemp("trt")
    model = make_micro_model()
    save_model(root / "micro.safetensors", model)
    cfg = GatedRankConfig(rank_low=2, rank_high=6)
    inject_adapters(model.sam.image_encoder, cfg)
    with torch.no_grad():
        for name, param in model.named_parameters():
            if is_adapter_param(name):
                param.normal_(0, 0.3)  # gate logits on both sides of 0
    save_adapters(root / "gated.safetensors", model.sam.image_encoder, cfg)
    out = root / "export"
    export_model(str(root / "micro.safetensors"), out, adapter=str(root / "gated.safetensors"))
    return out


def _toy_export(tmp_path, graph: onnx.GraphProto, dynamic_axes=None, opset: int = 17):
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    onnx.save(model, tmp_path / "toy.onnx")
    entry = {"file": "toy.onnx", "inputs": [], "outputs": [], "dynamic_axes": dynamic_axes or {}}
    write_manifest(tmp_path, {"model_id": "toy", "graphs": {"encoder": entry}})
    return tmp_path


def _graph(nodes, inputs, outputs, initializers=()):
    return helper.make_graph(nodes, "toy", inputs, outputs, initializer=list(initializers))


def _value(name, shape, elem=TensorProto.FLOAT):
    return helper.make_tensor_value_info(name, elem, shape)


# --- readiness check -------------------------------------------------------------------------


@pytest.mark.parametrize("version", ["8.6", "10", "10.3.0"])
def test_real_gated_export_is_ready(gated_export, version):
    report = check_export(gated_export, version)
    assert report.ok, report.format()
    assert {g.name for g in report.graphs} == {"encoder", "decoder"}
    encoder = next(g for g in report.graphs if g.name == "encoder")
    assert encoder.op_counts["Greater"] == 2 and encoder.op_counts["LayerNormalization"] == 4
    # The exporter annotates some static output dims symbolically; the probe proves them static.
    assert any("static" in f.message for f in encoder.findings if f.severity == "info")
    assert "ready" in report.format().splitlines()[-1]


def test_ort_only_graphs_are_skipped(gated_export, tmp_path):
    out = tmp_path / "with-int8"
    shutil.copytree(gated_export, out)
    shutil.copy(out / "encoder.onnx", out / "encoder_int8.onnx")
    manifest = read_manifest(out)
    manifest["graphs"]["encoder_int8"] = {
        **manifest["graphs"]["encoder"],
        "file": "encoder_int8.onnx",
    }
    write_manifest(out, manifest)
    report = check_export(out, "10")
    assert report.ok and "encoder_int8" in report.skipped


def test_nonzero_graph_fails_with_a_clear_message(tmp_path):
    graph = _graph(
        [helper.make_node("NonZero", ["x"], ["idx"])],
        [_value("x", [4, 4])],
        [_value("idx", [2, "n"], TensorProto.INT64)],
    )
    report = check_export(_toy_export(tmp_path, graph), "10")
    assert not report.ok
    errors = [f for g in report.graphs for f in g.findings if f.severity == "error"]
    assert any(f.check == "data-dependent" and "NonZero" in f.message for f in errors)
    text = report.format()
    assert "NonZero" in text and "NOT ready" in text


def test_undeclared_dynamic_axis_fails(tmp_path):
    graph = _graph(
        [helper.make_node("Relu", ["x"], ["y"])],
        [_value("x", ["batch", 3])],
        [_value("y", ["batch", 3])],
    )
    report = check_export(_toy_export(tmp_path, graph), "8.6")
    assert not report.ok
    message = " ".join(
        f.message for g in report.graphs for f in g.findings if f.severity == "error"
    )
    assert "'x' axis 0 is dynamic ('batch')" in message and "does not declare" in message
    declared = {"x": {"0": "batch"}, "y": {"0": "batch"}}
    assert check_graph(onnx.load(tmp_path / "toy.onnx"), declared, "10").ok


def test_shape_computed_from_values_is_flagged():
    shape = helper.make_node("Cast", ["s"], ["s64"], to=TensorProto.INT64)
    graph = _graph(
        [shape, helper.make_node("Reshape", ["x", "s64"], ["y"])],
        [_value("x", [6]), _value("s", [2])],
        [_value("y", [2, 3])],
    )
    report = check_graph(helper.make_model(graph), {}, "10")
    assert any("values of 's'" in f.message for f in report.findings if f.severity == "error")


@pytest.mark.parametrize(
    ("op", "version", "ok"),
    [("Hardmax", "8.6", False), ("Hardmax", "10", True), ("LayerNormalization", "8.6", True)],
)
def test_operator_tables_differ_by_version(op, version, ok):
    inputs = [_value("x", [2, 4])]
    extra = []
    if op == "LayerNormalization":
        extra = [helper.make_tensor("g", TensorProto.FLOAT, [4], [1.0] * 4)]
    node = helper.make_node(op, ["x", *(e.name for e in extra)], ["y"])
    graph = _graph([node], inputs, [_value("y", [2, 4])], extra)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    assert check_graph(model, {}, version).ok is ok


def test_opset_double_and_later_ops_are_rejected():
    double = TensorProto.DOUBLE
    graph = _graph(
        [helper.make_node("Relu", ["x"], ["y"])],
        [_value("x", [2], double)],
        [_value("y", [2], double)],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 21)])
    checks = {f.check for f in check_graph(model, {}, "10").findings if f.severity == "error"}
    assert {"opset", "dtype"} <= checks
    stft = _graph(
        [helper.make_node("STFT", ["x", "step"], ["y"])],
        [_value("x", [1, 64, 1])],
        [_value("y", [1, 4, 33, 2])],
        [helper.make_tensor("step", TensorProto.INT64, [], [16])],
    )
    report = check_graph(helper.make_model(stft, opset_imports=[helper.make_opsetid("", 17)]), {})
    assert any("10.5" in f.message for f in report.findings)


def test_fp32_nodes_cover_layernorms_and_gate_branches(gated_export):
    keep = fp32_nodes(onnx.load(gated_export / "encoder.onnx"))
    gate = [n for n, why in keep.items() if why == "gate"]
    assert gate[0].endswith("gated_gate/ReduceMean") and gate[-1].endswith("gated_gate/Greater")
    assert any("gated_fc2/Gemm" in n for n in gate) and not any(n.endswith("/Cast") for n in gate)
    norms = [n for n, why in keep.items() if why == "layernorm"]
    assert any(n.endswith("norm1/LayerNormalization") for n in norms)
    assert {"/image_encoder/neck/neck.1/Pow", "/image_encoder/neck/neck.1/Sqrt"} <= set(norms)
    assert not any("Softmax" in n or "attn/qkv" in n for n in keep)


# --- cache keys and build policy (no TensorRT needed) ----------------------------------------


def _profile():
    return {"point_coords": ((1, 1, 2), (16, 2, 2), (128, 8, 2))}


def test_cache_key_is_stable_and_changes_with_every_ingredient(gated_export, tmp_path):
    onnx_path = gated_export / "decoder.onnx"
    args = dict(
        trt_version="10.3.0", compute_capability="8.7", precision="fp16", profile=_profile()
    )
    key = trt_build.engine_cache_key(onnx_path, **args)
    assert key == trt_build.engine_cache_key(onnx_path, **args) and len(key) == 64
    other = tmp_path / "decoder.onnx"
    other.write_bytes(onnx_path.read_bytes() + b"\0")
    variants = [
        {"trt_version": "8.6.2"},
        {"compute_capability": "8.6"},
        {"precision": "fp32"},
        {"profile": {"point_coords": ((1, 1, 2), (16, 2, 2), (64, 8, 2))}},
    ]
    keys = {trt_build.engine_cache_key(onnx_path, **{**args, **v}) for v in variants}
    keys.add(trt_build.engine_cache_key(other, **args))
    assert len(keys) == 5 and key not in keys
    path = trt_build.engine_path(tmp_path, "decoder", key)
    assert path.name == f"decoder-{key[:16]}.engine"


def test_policy_never_without_engine_is_a_clear_error(gated_export, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "tensorrt", None)  # any import attempt would fail
    with pytest.raises(trt_build.EngineNotFoundError) as caught:
        trt_build.build_engine(
            gated_export / "encoder.onnx", "fp16", {}, tmp_path, "never", **IDENTITY
        )
    # The message is the command that fixes it, for this export, precision and cache.
    command = f"ranksam build-engine --export {gated_export} --precision fp16 --cache {tmp_path}"
    assert command in str(caught.value) and "TensorRT 10.3.0, sm 8.7" in str(caught.value)
    assert list(tmp_path.iterdir()) == []  # nothing built, nothing written


def test_if_missing_builds_once_and_logs_it(gated_export, tmp_path, caplog):
    calls = []

    def fake_builder(path, precision, profile):
        calls.append((path.name, precision))
        return b"engine-bytes"

    run = dict(cache_dir=tmp_path, builder=fake_builder, graph="encoder", **IDENTITY)
    onnx_path = gated_export / "encoder.onnx"
    with caplog.at_level(logging.WARNING, logger="ranksam_ros.tensorrt"):
        first = trt_build.build_engine(onnx_path, "fp16", {}, policy="if_missing", **run)
    assert first.built and first.path.read_bytes() == b"engine-bytes"
    assert "building TensorRT engine" in caplog.text and "built TensorRT engine" in caplog.text
    sidecar = json.loads(first.path.with_suffix(".json").read_text())
    assert sidecar["key"] == first.key and sidecar["tensorrt"] == "10.3.0"
    assert sidecar["compute_capability"] == "8.7" and sidecar["precision"] == "fp16"
    second = trt_build.build_engine(onnx_path, "fp16", {}, policy="if_missing", **run)
    assert not second.built and len(calls) == 1
    third = trt_build.build_engine(onnx_path, "fp16", {}, policy="never", **run)
    assert third.path == first.path
    first.path.with_suffix(".json").write_text("{broken")
    assert trt_build.build_engine(onnx_path, "fp16", {}, policy="if_missing", **run).built
    assert trt_build.build_engine(onnx_path, "fp16", {}, policy="always", **run).built
    assert len(calls) == 3


def test_export_profiles_follow_the_manifest(gated_export, tmp_path):
    manifest = read_manifest(gated_export)
    profiles = trt_build.export_profiles(gated_export, manifest, trt_build.decoder_sizes())
    assert profiles["encoder"]["image"] == ((1, 3, 64, 64),) * 3
    assert profiles["decoder"]["point_coords"] == ((1, 1, 2), (16, 2, 2), (128, 8, 2))
    assert profiles["decoder"]["point_labels"] == ((1, 1), (16, 2), (128, 8))
    model = onnx.load(gated_export / "decoder.onnx")
    with pytest.raises(ValueError, match="without a size range"):
        trt_build.graph_profile(model, {}, {})
    records = trt_build.build_export_engines(
        gated_export, "fp32", tmp_path, builder=lambda *a: b"x", **IDENTITY
    )
    assert set(records) == {"encoder", "decoder"} and all(r.built for r in records.values())
    assert records["decoder"].path.name.startswith("decoder-")


class _FakeTensor:
    def __init__(self, dtype):
        self.dtype = dtype


class _FakeLayer:
    def __init__(self, name, kind="op", metadata="", inputs=("f32",), outputs=("f32",)):
        self.name, self.type, self.metadata = name, kind, metadata
        self._in = [_FakeTensor(d) for d in inputs]
        self._out = [_FakeTensor(d) for d in outputs]
        self.num_inputs, self.num_outputs = len(self._in), len(self._out)
        self.precision, self.output_types = None, {}

    def get_input(self, i):
        return self._in[i]

    def get_output(self, i):
        return self._out[i]

    def set_output_type(self, i, dtype):
        self.output_types[i] = dtype


def test_fp32_pinning_maps_parser_layers_to_onnx_nodes():
    from types import SimpleNamespace

    from ranksam_ros.deploy.trt_engine import mark_fp32_layers

    trt = SimpleNamespace(float32="f32", float16="f16", LayerType=SimpleNamespace(CONSTANT="const"))
    layers = [
        _FakeLayer("/b/norm1/LayerNormalization"),  # first layer of a kept node
        _FakeLayer("/b/gated_gate/gated_fc1/Gemm_1"),  # second layer of a kept node
        _FakeLayer("/b/gated_gate/Greater", outputs=("bool",)),  # compare: precision only
        _FakeLayer("fused", metadata="[ONNX Layer: /b/gated_gate/Erf]"),  # via metadata
        _FakeLayer("/b/Add_1"),  # its own ONNX node, not the 2nd layer of /b/Add
        _FakeLayer("/b/gated_gate/ReduceMean", kind="const"),  # constants are skipped
        _FakeLayer("/b/gated_gate/Div", inputs=("i64",)),  # shape arithmetic is skipped
    ]
    network = SimpleNamespace(num_layers=len(layers), get_layer=lambda i: layers[i])
    keep = dict.fromkeys(
        ["/b/norm1/LayerNormalization", "/b/gated_gate/gated_fc1/Gemm", "/b/gated_gate/Greater"]
        + ["/b/gated_gate/Erf", "/b/Add", "/b/gated_gate/ReduceMean", "/b/gated_gate/Div"],
        "x",
    )
    all_nodes = set(keep) | {"/b/Add_1"}
    assert mark_fp32_layers(trt, network, keep, all_nodes) == 4
    assert [layer.precision for layer in layers] == ["f32"] * 4 + [None] * 3
    assert layers[2].output_types == {} and layers[0].output_types == {0: "f32"}


def test_engine_runner_validates_before_touching_the_gpu():
    from types import SimpleNamespace

    from ranksam_ros.backends.tensorrt_backend import _EngineRunner

    shapes = {"point_coords": (-1, -1, 2), "embedding": (1, 32, 8, 8), "masks": (-1, 4, 32, 32)}
    engine = SimpleNamespace(
        num_io_tensors=3,
        get_tensor_name=lambda i: list(shapes)[i],
        get_tensor_dtype=lambda name: "f32",
        get_tensor_mode=lambda name: "in" if name != "masks" else "out",
        get_tensor_shape=lambda name: shapes[name],
        get_tensor_profile_shape=lambda name, p: ((1, 1, 2), (16, 2, 2), (4, 8, 2)),
        create_execution_context=lambda: None,
    )
    trt = SimpleNamespace(nptype=lambda t: np.float32, TensorIOMode=SimpleNamespace(INPUT="in"))
    runner = _EngineRunner(trt, engine, "decoder", None, None)
    good = {
        "embedding": np.zeros((1, 32, 8, 8), np.float32),
        "point_coords": np.zeros((4, 3, 2), np.float32),
    }
    runner.validate(good)
    with pytest.raises(ValueError, match="outside the engine profile"):
        runner.validate({**good, "point_coords": np.zeros((5, 3, 2), np.float32)})
    with pytest.raises(ValueError, match="dtype float64"):
        runner.validate({**good, "embedding": np.zeros((1, 32, 8, 8))})
    with pytest.raises(ValueError, match="engine takes"):
        runner.validate({"embedding": good["embedding"]})


# --- CLI and backend selection -----------------------------------------------------------------


def _parser():
    parser = argparse.ArgumentParser(prog="ranksam")
    add_trt_commands(parser.add_subparsers(dest="command", required=True))
    return parser


def test_cli_trt_check_and_trtexec_lines(gated_export, capsys):
    args = _parser().parse_args(
        ["trt-check", "--export", str(gated_export), "--trt-version", "8.6"]
    )
    assert args.func(args) == 0 and "ready" in capsys.readouterr().out
    args = _parser().parse_args(["build-engine", "--export", str(gated_export), "--print-trtexec"])
    assert args.func(args) == 0
    out = capsys.readouterr().out
    assert "--minShapes=point_coords:1x1x2,point_labels:1x1" in out
    assert "--maxShapes=point_coords:128x8x2,point_labels:128x8" in out
    assert "--precisionConstraints=obey" in out and "LayerNormalization:fp32" in out
    assert "gated_gate/Greater:fp32" in out.split("--layerOutputTypes")[0]
    assert "gated_gate/Greater:fp32" not in out.split("--layerOutputTypes")[1]


def test_tensorrt_backend_without_tensorrt_gives_the_install_hint(gated_export, monkeypatch):
    monkeypatch.setitem(sys.modules, "tensorrt", None)
    with pytest.raises(ImportError, match="pip install") as info:
        create_backend(BackendConfig(backend="tensorrt", model=str(gated_export)))
    assert "python3-libnvinfer" in str(info.value)


def test_shared_prompt_logic():
    coords, labels = graph_prompts.decoder_prompts(np.ones((3, 1, 2)), np.ones((3, 1)))
    assert coords.shape == (3, 2, 2) and labels[:, -1].tolist() == [-1.0] * 3
    box_coords, box_labels = graph_prompts.decoder_prompts(
        np.ones((2, 2, 2)), np.tile([2.0, 3.0], (2, 1))
    )
    assert box_coords.shape == (2, 2, 2) and box_labels.dtype == np.float32
    masks, iou = graph_prompts.select_masks(
        np.zeros((2, 4, 8, 8)), np.arange(8.0).reshape(2, 4), True
    )
    assert masks.shape == (2, 3, 8, 8) and iou[0].tolist() == [1.0, 2.0, 3.0]
    with pytest.raises(ValueError, match=r"\(N, P, 2\)"):
        graph_prompts.decoder_prompts(np.ones((2, 2)), np.ones(2))


# --- GPU: engines against ONNX Runtime ---------------------------------------------------------


def _tensorrt_ready() -> bool:
    if not torch.cuda.is_available():
        return False
    try:
        import tensorrt  # noqa: F401
    except (ImportError, OSError):
        return False
    return True


gpu = pytest.mark.skipif(not _tensorrt_ready(), reason="needs a CUDA GPU and TensorRT")


def _frame_and_prompts(seed: int = 0):
    rng = np.random.default_rng(seed)
    image = rng.standard_normal((1, 3, 64, 64)).astype(np.float32)
    boxes = np.sort(rng.uniform(0, 64, (6, 2, 2)), axis=1).reshape(6, 4)
    points = rng.uniform(0, 64, (5, 2, 2)).astype(np.float32)
    return image, boxes.astype(np.float32), points, np.ones((5, 2), np.float32)


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    a, b = a > 0, b > 0
    union = np.logical_or(a, b).sum()
    return 1.0 if union == 0 else float(np.logical_and(a, b).sum() / union)


@pytest.mark.gpu
@gpu
@pytest.mark.parametrize("precision", ["fp32", "fp16"])
def test_tensorrt_matches_onnxruntime(gated_export, tmp_path, precision):
    from ranksam_ros.backends.onnx_backend import OnnxBackend
    from ranksam_ros.backends.tensorrt_backend import TensorRTBackend
    from ranksam_ros.graph.prompts import boxes_to_prompts

    reference = OnnxBackend(gated_export)
    engine = TensorRTBackend(gated_export, precision=precision, cache_dir=tmp_path, max_prompts=4)
    image, boxes, points, point_labels = _frame_and_prompts()
    ref_enc, trt_enc = reference.encode(image), engine.encode(image)
    rel = np.linalg.norm(trt_enc.embedding - ref_enc.embedding) / np.linalg.norm(ref_enc.embedding)
    if precision == "fp32":
        assert rel <= 1e-3
        assert trt_enc.layer_ranks == ref_enc.layer_ranks
    for coords, labels in (boxes_to_prompts(boxes), (points, point_labels)):
        ref_masks, _ = reference.decode(ref_enc, coords, labels, multimask=False)
        # End to end on TensorRT; 6 box prompts > max_prompts=4, so the batch is split.
        masks, iou = engine.decode(trt_enc, coords, labels, multimask=False)
        assert masks.shape == ref_masks.shape and iou.shape == (len(coords), 1)
        assert min(_iou(m, r) for m, r in zip(masks, ref_masks)) >= 0.98
    cached = TensorRTBackend(
        gated_export, precision=precision, cache_dir=tmp_path, max_prompts=4, policy="never"
    )
    assert all(not record.built for record in cached.engines.values())
