"""ONNX export with live gates, the ONNX Runtime backend, manifests and their checks."""

from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import pytest
import torch

from ranksam_ros.adapters.gated_rank import GatedRankConfig
from ranksam_ros.adapters.inject import inject_adapters, is_adapter_param
from ranksam_ros.adapters.io import save_adapters
from ranksam_ros.adapters.lora import LoraConfig
from ranksam_ros.backends import create_backend
from ranksam_ros.backends.onnx_backend import OnnxBackend
from ranksam_ros.backends.torch_backend import TorchBackend
from ranksam_ros.config import BackendConfig, PipelineConfig, PromptConfig
from ranksam_ros.deploy.export import INT8_SOURCE, export_model
from ranksam_ros.graph.prompts import boxes_to_prompts
from ranksam_ros.modeling.prompt_predictor import build_prompt_predictor, save_prompt_predictor
from ranksam_ros.modeling.registry import build_model, save_model
from ranksam_ros.pipeline.pipeline import Pipeline


def _model_dir(tmp_path, micro_model):
    root = tmp_path / "micro-model"
    (root / "adapters").mkdir(parents=True)
    save_model(root / "model.safetensors", micro_model)
    (root / "model.json").write_text('{"calibration": {"box_mask_threshold": -1.25}}')
    predictor = build_prompt_predictor(micro_model.arch, tuple(f"c{i}" for i in range(3)))
    save_prompt_predictor(root / "prompt_predictor.safetensors", predictor)
    for cfg in (GatedRankConfig(rank_low=2, rank_high=4), LoraConfig(rank=2)):
        kind = cfg.kind
        model = build_model(str(root))
        inject_adapters(model.sam.image_encoder, cfg)
        with torch.no_grad():
            for name, param in model.named_parameters():
                if is_adapter_param(name) and "gated_fc" not in name:
                    param.normal_(0, 0.3)
        save_adapters(
            root / "adapters" / f"{kind.split('_')[0]}.safetensors", model.sam.image_encoder, cfg
        )
    return root


@pytest.fixture
def exported(tmp_path, micro_model):
    root = _model_dir(tmp_path, micro_model)
    out = tmp_path / "export-gated"
    export_model(str(root), out, adapter="gated")
    return root, out


def test_manifest_describes_the_graphs(exported):
    _, out = exported
    manifest = json.loads((out / "manifest.json").read_text())
    assert set(manifest["graphs"]) == {"encoder", "prompt_predictor", "decoder"}
    assert manifest["adapter_mode"].startswith("gated") and len(manifest["gated_layers"]) == 4
    assert manifest["input_size"] == 64 and manifest["mask_size"] == 32
    assert all(len(g["sha256"]) == 64 for g in manifest["graphs"].values())
    # the model card's calibrated box cut travels with the export to the engines
    assert OnnxBackend(out).info.box_mask_threshold == -1.25


@pytest.mark.parametrize("adapter", ["gated", "lora", "none"])
def test_onnxruntime_matches_torch(tmp_path, micro_model, adapter):
    root = _model_dir(tmp_path, micro_model)
    out = tmp_path / f"export-{adapter}"
    export_model(str(root), out, adapter=adapter)
    ours, reference = (
        OnnxBackend(out, threads=2),
        TorchBackend(build_model(str(root), adapter=adapter)),
    )
    image = np.random.default_rng(0).normal(size=(1, 3, 64, 64)).astype(np.float32)
    a, b = ours.encode(image), reference.encode(image)
    rel = np.linalg.norm(a.embedding - b.embedding) / np.linalg.norm(b.embedding)
    assert rel < 1e-4
    assert a.active_rank == b.active_rank and a.layer_ranks == b.layer_ranks
    maps_a, maps_b = ours.predict_prompts(a, image), reference.predict_prompts(b, image)
    np.testing.assert_allclose(maps_a.confidence, maps_b.confidence, atol=1e-4)
    np.testing.assert_allclose(maps_a.class_probs, maps_b.class_probs, atol=1e-4)
    points = np.random.default_rng(1).uniform(0, 64, (7, 1, 2)).astype(np.float32)
    for coords, labels, multi in [
        (points, np.ones((7, 1), np.float32), True),
        (*boxes_to_prompts(np.array([[4, 4, 40, 30], [0, 10, 63, 50]], np.float32)), False),
    ]:
        (ma, ia), (mb, ib) = (
            ours.decode(a, coords, labels, multi),
            reference.decode(b, coords, labels, multi),
        )
        assert ma.shape == mb.shape
        np.testing.assert_allclose(ma, mb, atol=1e-3)
        np.testing.assert_allclose(ia, ib, atol=1e-4)


def test_pipeline_runs_on_onnxruntime(exported):
    _, out = exported
    cfg = PipelineConfig(prompts=PromptConfig(threshold=0.0, min_pred_iou=0.0, max_prompts=8))
    image = np.random.default_rng(2).integers(0, 255, (48, 64, 3), dtype=np.uint8)
    result = Pipeline(OnnxBackend(out), cfg)(image)
    assert result.prompts_decoded > 0 and result.active_rank is not None


def test_tampered_and_missing_files_are_refused(exported):
    _, out = exported
    decoder = out / "decoder.onnx"
    data = bytearray(decoder.read_bytes())
    data[-10] ^= 0xFF
    decoder.write_bytes(bytes(data))
    with pytest.raises(ValueError, match="SHA-256 differs"):
        OnnxBackend(out)
    decoder.unlink()
    with pytest.raises(FileNotFoundError, match="decoder.onnx is missing"):
        OnnxBackend(out)
    manifest = json.loads((out / "manifest.json").read_text())
    manifest["format"] = "ranksam-export/0"
    (out / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(ValueError, match="re-export"):
        OnnxBackend(out)
    (out / "manifest.json").unlink()
    with pytest.raises(FileNotFoundError, match="no manifest.json"):
        OnnxBackend(out)


def test_wrong_inputs_fail_before_inference(exported):
    _, out = exported
    backend = OnnxBackend(out)
    with pytest.raises(ValueError, match="float32"):
        backend.encode(np.zeros((1, 3, 32, 32), np.float32))
    with pytest.raises(ValueError, match="float32"):
        backend.encode(np.zeros((1, 3, 64, 64), np.float64))
    encoded = backend.encode(np.zeros((1, 3, 64, 64), np.float32))
    with pytest.raises(ValueError, match=r"\(N, P, 2\)"):
        backend.decode(encoded, np.zeros((2, 2)), np.zeros((2,)), True)


def _int8_export(tmp_path, root, name: str, monkeypatch, min_mask_iou: float) -> dict:
    from ranksam_ros.deploy import quantize

    monkeypatch.setattr(quantize, "MIN_MASK_IOU", min_mask_iou)
    export_model(str(root), tmp_path / name, adapter="gated", precision="int8")
    return json.loads((tmp_path / name / "manifest.json").read_text())


def test_int8_encoder_ships_only_when_its_parity_gate_accepts(tmp_path, micro_model, monkeypatch):
    root = _model_dir(tmp_path, micro_model)
    lenient = _int8_export(tmp_path, root, "lenient", monkeypatch, min_mask_iou=0.0)
    strict = _int8_export(tmp_path, root, "strict", monkeypatch, min_mask_iou=1.01)
    for manifest, threshold in ((lenient, 0.0), (strict, 1.01)):
        record = manifest["int8"]
        assert record["min_mask_iou"] == threshold
        assert record["accepted"] == (record["mask_iou_vs_fp32"] >= threshold)
        assert ("encoder_int8" in manifest["graphs"]) == record["accepted"]
    assert lenient["int8"]["accepted"] and not strict["int8"]["accepted"]
    # One model, one quantisation: the gate's verdict is all that differs.
    iou = lenient["int8"]["mask_iou_vs_fp32"]
    assert strict["int8"]["mask_iou_vs_fp32"] == pytest.approx(iou) and 0.5 < iou <= 1.0
    image = np.random.default_rng(0).normal(size=(1, 3, 64, 64)).astype(np.float32)
    quantised = OnnxBackend(tmp_path / "lenient", int8=True).encode(image).embedding
    reference = OnnxBackend(tmp_path / "lenient").encode(image).embedding
    cosine = np.sum(quantised * reference) / np.linalg.norm(quantised) / np.linalg.norm(reference)
    assert (
        quantised.shape == (1, 32, 8, 8)
        and cosine > 0.9
        and not np.array_equal(quantised, reference)
    )
    with pytest.raises(ValueError, match="rejected by the parity gate"):
        OnnxBackend(tmp_path / "strict", int8=True)
    assert not (tmp_path / "strict" / "encoder_int8.onnx").exists()  # no rejected graph kept


def test_export_fingerprint_follows_the_weights(tmp_path):
    from ranksam_ros.deploy.cache import export_fingerprint

    (tmp_path / "adapters").mkdir()
    (tmp_path / "model.safetensors").write_bytes(b"weights-1")
    (tmp_path / "adapters" / "gated.safetensors").write_bytes(b"adapter")
    first = export_fingerprint(tmp_path)
    assert first == export_fingerprint(tmp_path) and len(first) == 12
    (tmp_path / "adapters" / "gated.safetensors").write_bytes(b"adapter, retrained")
    assert export_fingerprint(tmp_path) != first


@pytest.fixture(scope="module")
def conv_export(tmp_path_factory):
    """A micro conv model (fine features, semantic head, predictor, gated adapters) exported."""
    root = tmp_path_factory.mktemp("conv")
    model = build_model("micro-conv")
    with torch.no_grad():
        for param in model.parameters():
            param.add_(0.05 * torch.randn_like(param))
    (root / "model" / "adapters").mkdir(parents=True)
    save_model(root / "model" / "model.safetensors", model)
    offsets = np.linspace(-2.0, 2.0, len(model.arch.semantic_classes)).round(3).tolist()
    card = {"calibration": {"semantic_logit_offsets": offsets}}
    (root / "model" / "model.json").write_text(json.dumps(card))
    predictor = build_prompt_predictor(model.arch, model.arch.semantic_classes)
    save_prompt_predictor(root / "model" / "prompt_predictor.safetensors", predictor)
    cfg = GatedRankConfig(rank_low=2, rank_high=2, target_modules=("block.3", "block.5"))
    inject_adapters(model.sam.image_encoder, cfg)
    save_adapters(root / "model" / "adapters" / "gated.safetensors", model.sam.image_encoder, cfg)
    export_model(str(root / "model"), root / "export", adapter="gated")
    return root


def test_conv_model_exports_fine_features_and_semantics_that_match_torch(conv_export):
    ours = OnnxBackend(conv_export / "export", threads=2)
    reference = TorchBackend(build_model(str(conv_export / "model"), adapter="gated"))
    manifest = json.loads((conv_export / "export" / "manifest.json").read_text())
    assert manifest["graphs"]["encoder"]["outputs"][-2:] == ["detail", "semantic"]
    assert ours.info.semantic_head and ours.info.prompt_predictor
    assert ours.info.class_names == reference.info.class_names == tuple(manifest["class_names"])
    image = np.random.default_rng(2).normal(size=(1, 3, 64, 64)).astype(np.float32)
    a, b = ours.encode(image), reference.encode(image)
    for name in ("embedding", "detail", "semantic"):
        np.testing.assert_allclose(getattr(a, name), getattr(b, name), atol=1e-4)
    np.testing.assert_allclose(a.semantic.sum(1), 1.0, atol=1e-5)
    # The card's prior correction is in the graph: against the raw head, every pixel's log
    # probabilities move by the offsets (up to the softmax's per-pixel constant).
    offsets = np.asarray(manifest["calibration"]["semantic_logit_offsets"])
    reference.model.calibration = {}
    shift = np.log(a.semantic) - np.log(reference.encode(image).semantic)
    shift -= shift.mean(axis=1, keepdims=True)
    expected = np.broadcast_to((offsets - offsets.mean())[None, :, None, None], shift.shape)
    np.testing.assert_allclose(shift, expected, atol=1e-3)
    coords, labels = boxes_to_prompts(np.array([[4, 4, 40, 30]], np.float32))
    np.testing.assert_allclose(
        ours.decode(a, coords, labels, False)[0],
        reference.decode(b, coords, labels, False)[0],
        atol=1e-3,
    )


def _conv_int8(conv_export, out, monkeypatch, min_agreement: float) -> dict:
    from ranksam_ros.deploy import quantize

    monkeypatch.setattr(quantize, "MIN_MASK_IOU", 0.0)
    monkeypatch.setattr(quantize, "MIN_CLASS_AGREEMENT", min_agreement)
    export_model(str(conv_export / "model"), out, adapter="none", precision="int8")
    return json.loads((out / "manifest.json").read_text())


def test_int8_gate_of_a_semantic_model_checks_its_class_map(conv_export, tmp_path, monkeypatch):
    lenient = _conv_int8(conv_export, tmp_path / "lenient", monkeypatch, 0.0)["int8"]
    strict = _conv_int8(conv_export, tmp_path / "strict", monkeypatch, 1.01)
    agreement = lenient["class_agreement_vs_fp32"]
    assert 0.5 < agreement <= 1.0 and lenient["accepted"]
    # Same quantisation, same masks: the class map alone rejects it.
    assert strict["int8"]["class_agreement_vs_fp32"] == pytest.approx(agreement)
    assert not strict["int8"]["accepted"] and "encoder_int8" not in strict["graphs"]
    with pytest.raises(ValueError, match="rejected by the parity gate.*class map agreement"):
        OnnxBackend(tmp_path / "strict", int8=True)
    config = BackendConfig(
        backend="onnxruntime", model=str(tmp_path / "lenient"), threads=2, precision="int8"
    )
    int8, fp32 = create_backend(config), create_backend(replace(config, precision="fp32"))
    assert int8.info.model_id.endswith("@onnxruntime+int8")
    assert fp32.info.model_id.endswith("@onnxruntime")
    image = np.random.default_rng(4).normal(size=(1, 3, 64, 64)).astype(np.float32)
    a, b = int8.encode(image), fp32.encode(image)
    assert not np.array_equal(a.embedding, b.embedding)  # the quantised graph ran
    assert np.mean(np.argmax(a.semantic[0], 0) == np.argmax(b.semantic[0], 0)) > 0.9


def test_gated_int8_quantises_the_adapted_linears_and_keeps_gates_fp32(
    conv_export, tmp_path, monkeypatch
):
    import shutil

    import onnx

    from ranksam_ros.deploy import quantize

    monkeypatch.setattr(quantize, "MIN_MASK_IOU", 0.0)
    monkeypatch.setattr(quantize, "MIN_CLASS_AGREEMENT", 0.0)
    root = tmp_path / "model"
    shutil.copytree(conv_export / "model", root)
    model = build_model(str(root))
    cfg = GatedRankConfig(rank_low=2, rank_high=2, target_modules=("block.3", "block.5"))
    inject_adapters(model.sam.image_encoder, cfg)
    with torch.no_grad():  # a real update; the gate MLPs keep zero weights: open by their bias
        for name, param in model.sam.image_encoder.named_parameters():
            if name.endswith(("gated_A", "gated_B")):
                param.normal_(0, 0.3)
    save_adapters(root / "adapters" / "gated.safetensors", model.sam.image_encoder, cfg)
    out = tmp_path / "gated-int8"
    export_model(str(root), out, adapter="gated", precision="int8")
    export_model(str(root), tmp_path / "frozen", adapter="none")
    assert not (out / INT8_SOURCE).exists()  # the quantiser's source is removed
    graph = onnx.load(str(out / "encoder_int8.onnx")).graph
    integer = [
        n.name for n in graph.node if n.op_type in ("MatMulInteger", "DynamicQuantizeMatMul")
    ]
    # Every adapted linear's frozen weight is int8 (the folded form would leave them fp32) ...
    assert sum("/base/" in name for name in integer) == 2 * 2  # 2 ConvNeXt blocks x 2 linears
    # ... while no gate branch is quantised, so int8 noise cannot flip a gate.
    assert not [name for name in integer if "/gated_gate/" in name]
    image = np.random.default_rng(5).normal(size=(1, 3, 64, 64)).astype(np.float32)
    gated = OnnxBackend(out, threads=2).encode(image)
    int8 = OnnxBackend(out, threads=2, int8=True).encode(image)
    frozen = OnnxBackend(tmp_path / "frozen", threads=2).encode(image)
    np.testing.assert_array_equal(int8.layer_ranks, gated.layer_ranks)
    # The int8 graph carries the adapters' update: far nearer the gated fp32 embedding than
    # the frozen one is, though not equal to it.
    quantisation = np.abs(int8.embedding - gated.embedding).mean()
    update = np.abs(frozen.embedding - gated.embedding).mean()
    assert 0 < quantisation < 0.25 * update


def test_exporting_leaves_the_model_in_eval_mode(tmp_path):
    from ranksam_ros.deploy.export import _export
    from ranksam_ros.modeling.export_wrappers import EncoderGraph, io_names

    model = build_model("micro-conv").eval()
    _export(
        EncoderGraph(model),
        (torch.zeros(1, 3, 64, 64),),
        tmp_path / "e.onnx",
        io_names(model)["encoder"],
        17,
    )
    # A fresh wrapper is in training mode and the exporter restores it: BatchNorm statistics
    # would then move on the next forward pass (a second export of the encoder differed).
    assert not any(module.training for module in model.modules())


def test_pipeline_names_masks_with_the_semantic_head(conv_export):
    backend = TorchBackend(build_model(str(conv_export / "model")))
    pipeline = Pipeline(backend, PipelineConfig(prompts=PromptConfig(threshold=0.0)))
    image = np.random.default_rng(3).integers(0, 255, (48, 64, 3), dtype=np.uint8)
    frame = pipeline.encode(image, need_maps=False)
    assert frame.maps is None and frame.encoded.semantic is not None
    assert not pipeline.needs_prompt_maps(auto=False)  # the head names masks, no predictor
    result = pipeline(image)
    dense = np.argmax(frame.encoded.semantic[0], axis=0)
    assert set(np.unique(result.semantic)) <= set(np.unique(dense)) | {255}


def test_export_without_out_fills_the_cache_engines_look_in(tmp_path, monkeypatch, capsys):
    from ranksam_ros.cli import main
    from ranksam_ros.deploy.cache import cache_dir_for, is_export_dir, resolve_export

    monkeypatch.setenv("RANKSAM_CACHE", str(tmp_path / "cache"))
    command = ["export", "--model", "camvid-tiny", "--adapter", "gated"]
    target = cache_dir_for("camvid-tiny", "gated")
    assert main(command) == 0
    assert f"wrote the cache: {target}" in capsys.readouterr().out and is_export_dir(target)
    assert resolve_export("camvid-tiny", "gated") == target  # what OnnxBackend.from_model runs
    assert main(command) == 0
    assert f"already in the cache: {target}" in capsys.readouterr().out
    assert main([*command, "--precision", "fp16"]) == 2  # the cache holds fp32 and int8
    assert "pass --out DIR" in capsys.readouterr().err
    int8_target = cache_dir_for("camvid-tiny", "gated", "int8")
    assert int8_target != target and int8_target.name.endswith("-int8")
    with pytest.raises(FileNotFoundError, match="--precision int8"):
        resolve_export("camvid-tiny", "gated", "int8")  # the fp32 export does not stand in
