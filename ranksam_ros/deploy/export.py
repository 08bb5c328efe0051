"""``ranksam export``: ONNX graphs (encoder with live gates, prompt predictor, decoder) + manifest.

LoRA adapters are merged into the encoder weights before export (zero runtime cost); gated
adapters stay as graph ops because their gates depend on the image.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import onnx
import torch

from ranksam_ros.adapters.gated_rank import per_token_form
from ranksam_ros.adapters.inject import merge_and_unload
from ranksam_ros.adapters.registry import kind_of
from ranksam_ros.config import EXPORT_OPSET, EXPORT_PRECISIONS
from ranksam_ros.config_loader import to_dict
from ranksam_ros.graph.manifest import write_manifest
from ranksam_ros.graph.names import DECODER_DYNAMIC_AXES, TASKS
from ranksam_ros.modeling.build import arch_to_dict
from ranksam_ros.modeling.export_wrappers import (
    DecoderGraph,
    EncoderGraph,
    PromptPredictorGraph,
    TaskGraph,
    gated_layers,
    io_names,
    task_io_names,
)
from ranksam_ros.modeling.ranksam import RankSam
from ranksam_ros.modeling.registry import build_model

# An encoder graph written only to be quantised (removed afterwards), see _int8_encoder.
INT8_SOURCE = "encoder_int8_source.onnx"


def _export(
    module: torch.nn.Module,
    args: tuple,
    path: Path,
    names: dict[str, list[str]],
    opset: int,
    dynamic=None,
) -> None:
    # The exporter restores the wrapper's own mode afterwards, and a new wrapper is in training
    # mode: without this the wrapped model would leave here training (BatchNorm statistics
    # updated by the next forward pass, Gumbel noise in the gates).
    module.eval()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # tracer warnings about Python ints in SAM's code
        torch.onnx.export(
            module,
            args,
            str(path),
            input_names=names["inputs"],
            output_names=names["outputs"],
            dynamic_axes=dynamic,
            opset_version=opset,
            do_constant_folding=True,
            dynamo=False,
        )
    onnx.checker.check_model(str(path))


def _adapter_mode(model: RankSam) -> str:
    """Fold mergeable adapters into the weights; say how the adapters reach the graph."""
    cfg = model.adapter_cfg
    if cfg is None:
        return "none"
    kind = kind_of(cfg)
    if kind.mergeable:
        merge_and_unload(model.sam.image_encoder)
        return f"{cfg.kind} (merged into the encoder weights)"
    if kind.gated:
        return f"{cfg.kind} (live gates in the encoder graph)"
    part = "decoder" if kind.target == "mask_decoder" else "encoder"
    return f"{cfg.kind} (unmerged branch in the {part} graph)"


def export_model(
    model_name: str,
    out_dir: str | Path,
    adapter: str | None = None,
    precision: str = "fp32",
    opset: int = EXPORT_OPSET,
) -> Path:
    """Export ``model_name`` (+ ``adapter``) to ONNX graphs and a manifest in ``out_dir``.

    Args:
        model_name: Model name or path (see ``build_model``).
        out_dir: Output directory (created; existing graph files are replaced).
        adapter: Adapter name/path or ``none``.
        precision: ``fp32``; ``fp16`` (recorded for TensorRT builds, graphs stay fp32);
            ``int8`` (also writes a dynamically quantised encoder, kept only if it passes
            the parity check).
        opset: ONNX opset.

    Returns:
        Path of ``manifest.json``.
    """
    if precision not in EXPORT_PRECISIONS:
        choices = ", ".join(EXPORT_PRECISIONS)
        raise ValueError(f"--precision {precision!r}: choose one of {choices}")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    with torch.no_grad():
        return _export_all(model_name, out, adapter, precision, opset)


def _export_tasks(model_name: str, image: torch.Tensor, out: Path, opset: int) -> dict | None:
    """The multi-task set's graph when the model ships one (its record), else None."""
    from ranksam_ros.modeling.registry import resolve_model_dir
    from ranksam_ros.modeling.task_io import MULTITASK_FILE, load_task_model

    model_dir = resolve_model_dir(model_name)
    if model_dir is None or not (model_dir / MULTITASK_FILE).is_file():
        return None
    task_model = load_task_model(model_name, ()).eval()
    names = task_io_names(task_model)
    _export(TaskGraph(task_model), (image,), out / "tasks.onnx", names, opset)
    return {"file": "tasks.onnx", **names, "dynamic_axes": {}, "tasks": list(task_model.tasks)}


def _int8_encoder(
    model: RankSam, image: torch.Tensor, out: Path, manifest: dict, opset: int
) -> dict:
    """Quantise the encoder into ``encoder_int8.onnx``; its parity record.

    The quantiser's source computes what ``encoder.onnx`` does, but gated layers keep their
    frozen weights constant and so int8-able (per-token form, a scratch graph removed
    afterwards); ``encoder.onnx`` keeps the folded form, faster in fp32.
    """
    from ranksam_ros.deploy.quantize import quantize_encoder

    with per_token_form(model) as switched:
        if not switched:
            return quantize_encoder(out, manifest, out / "encoder.onnx")
        source = out / INT8_SOURCE
        try:
            _export(EncoderGraph(model), (image,), source, io_names(model)["encoder"], opset)
            return quantize_encoder(out, manifest, source)
        finally:
            source.unlink(missing_ok=True)


def _export_all(
    model_name: str, out: Path, adapter: str | None, precision: str, opset: int
) -> Path:
    model = build_model(model_name, adapter=adapter).eval()
    mode = _adapter_mode(model)
    arch = model.arch
    image = torch.zeros(1, 3, arch.img_size, arch.img_size)
    names = io_names(model)
    graphs = {}
    _export(EncoderGraph(model), (image,), out / "encoder.onnx", names["encoder"], opset)
    graphs["encoder"] = {"file": "encoder.onnx", **names["encoder"], "dynamic_axes": {}}
    embedding, detail = model.encode_with_detail(image)
    if model.prompt_predictor is not None:
        _export(
            PromptPredictorGraph(model),
            (embedding, image),
            out / "prompt_predictor.onnx",
            names["prompt_predictor"],
            opset,
        )
        graphs["prompt_predictor"] = {
            "file": "prompt_predictor.onnx",
            **names["prompt_predictor"],
            "dynamic_axes": {},
        }
    coords = torch.rand(2, 3, 2) * arch.img_size
    labels = torch.tensor([[1.0, 0.0, -1.0], [2.0, 3.0, -1.0]])
    _export(
        DecoderGraph(model),
        (embedding, coords, labels) + (() if detail is None else (detail,)),
        out / "decoder.onnx",
        names["decoder"],
        opset,
        DECODER_DYNAMIC_AXES,
    )
    graphs["decoder"] = {
        "file": "decoder.onnx",
        **names["decoder"],
        "dynamic_axes": DECODER_DYNAMIC_AXES,
    }
    tasks = _export_tasks(model_name, image, out, opset)
    if tasks is not None:
        graphs[TASKS] = tasks
    manifest = {
        "model_id": model.model_id,
        "adapter": to_dict(model.adapter_cfg) if model.adapter_cfg else None,
        "adapter_mode": mode,
        "gated_layers": [name for name, _ in gated_layers(model)],
        "arch": arch_to_dict(arch),
        "input_size": arch.img_size,
        "pixel_mean": list(arch.pixel_mean),
        "pixel_std": list(arch.pixel_std),
        "mask_size": arch.mask_size,
        "embedding_shape": list(embedding.shape),
        "class_names": list(model.class_names),
        "calibration": dict(model.calibration),
        "precision": precision,
        "opset": opset,
        "graphs": graphs,
        "versions": {"torch": torch.__version__, "onnx": onnx.__version__},
    }
    if precision == "int8":
        manifest["int8"] = _int8_encoder(model, image, out, manifest, opset)
        if manifest["int8"]["accepted"]:
            graphs["encoder_int8"] = {
                "file": "encoder_int8.onnx",
                **names["encoder"],
                "dynamic_axes": {},
            }
    return write_manifest(out, manifest)
