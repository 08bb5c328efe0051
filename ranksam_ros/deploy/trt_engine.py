"""The TensorRT API calls: import, machine identity, ONNX parsing, fp32 pinning, building.

Kept apart from the cache/key/policy logic of :mod:`ranksam_ros.deploy.trt_build` so that
module imports nothing from TensorRT.  Written against the TensorRT 10 Python API; where 8.6
differs (explicit-batch flag) the code branches on the major version.
"""

from __future__ import annotations

import logging
import re
from pathlib import Path

import onnx

from ranksam_ros.deploy.onnx_graph import fp32_nodes

log = logging.getLogger("ranksam_ros.tensorrt")

INSTALL_HINT = (
    "TensorRT is not installed: on x86 `pip install 'tensorrt>=10,<11'` (CUDA 12 wheels); "
    "on a Jetson use JetPack's `sudo apt install python3-libnvinfer` (TensorRT 8.6 on JetPack "
    "6.0, 10.3 on 6.1/6.2)"
)
Shape = tuple[int, ...]
Profile = dict[str, tuple[Shape, Shape, Shape]]


def import_tensorrt():
    """``import tensorrt`` with an install hint instead of a bare ImportError."""
    try:
        import tensorrt
    except (ImportError, OSError) as exc:  # OSError: wheel present, libnvinfer missing
        raise ImportError(INSTALL_HINT) from exc
    return tensorrt


def runtime_identity(device: int = 0) -> tuple[str, str]:
    """``(TensorRT version, compute capability)`` of this machine, e.g. ``("10.3.0", "8.7")``."""
    trt = import_tensorrt()
    import torch

    if not torch.cuda.is_available():
        raise RuntimeError("TensorRT engines need a CUDA GPU; torch.cuda.is_available() is False")
    major, minor = torch.cuda.get_device_capability(device)
    return str(trt.__version__), f"{major}.{minor}"


def serialize_engine(
    onnx_path: Path, precision: str, profile: Profile, workspace_mb: int = 0
) -> bytes:
    """Parse ``onnx_path`` with TensorRT and build a serialized engine (needs a GPU).

    Under fp16 the builder may pick FP16 kernels anywhere except the layers of
    :func:`~ranksam_ros.deploy.onnx_graph.fp32_nodes`, which are pinned to FP32 with
    ``OBEY_PRECISION_CONSTRAINTS``.
    """
    trt = import_tensorrt()
    major, minor = (int(p) for p in trt.__version__.split(".")[:2])
    if (major, minor) < (8, 6):
        raise RuntimeError(f"TensorRT {trt.__version__} is too old; 8.6 or 10.x is needed")
    if precision == "fp16" and not hasattr(trt.BuilderFlag, "FP16"):
        raise RuntimeError(
            f"TensorRT {trt.__version__} has no weakly-typed FP16 builds (removed in 11); "
            "use TensorRT 8.6/10.x or --precision fp32"
        )
    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    # Explicit batch is the only mode in 10 (flag deprecated); 8.6 must request it.
    flags = 0 if major >= 10 else 1 << int(trt.NetworkDefinitionCreationFlag.EXPLICIT_BATCH)
    network = builder.create_network(flags)
    parser = trt.OnnxParser(network, logger)
    if not parser.parse_from_file(str(onnx_path)):
        errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise RuntimeError(f"TensorRT could not parse {onnx_path}: {errors}")
    config = builder.create_builder_config()
    if workspace_mb > 0:
        config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, workspace_mb << 20)
    _add_profile(builder, network, config, profile)
    if precision == "fp32":
        # TF32 matmuls (on by default from Ampere) carry ~1e-3 relative error: not fp32.
        config.clear_flag(trt.BuilderFlag.TF32)
    else:
        config.set_flag(trt.BuilderFlag.FP16)
        config.set_flag(trt.BuilderFlag.OBEY_PRECISION_CONSTRAINTS)
        model = onnx.load(str(onnx_path), load_external_data=False)
        marked = mark_fp32_layers(
            trt, network, fp32_nodes(model), {n.name for n in model.graph.node}
        )
        log.info("%s: %d layers pinned to fp32 (LayerNorm, gate logits)", onnx_path.name, marked)
    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        raise RuntimeError(f"TensorRT failed to build {onnx_path} (see the TensorRT log above)")
    return bytes(serialized)


def _add_profile(builder, network, config, profile: Profile) -> None:
    """One optimization profile covering the dynamic inputs (static graphs need none)."""
    dynamic = []
    for i in range(network.num_inputs):
        tensor = network.get_input(i)
        if any(d < 0 for d in tuple(tensor.shape)):
            if tensor.name not in profile:
                raise ValueError(f"dynamic input {tensor.name!r} has no shape profile")
            dynamic.append(tensor.name)
    if not dynamic:
        return
    opt_profile = builder.create_optimization_profile()
    for name in dynamic:
        opt_profile.set_shape(name, *profile[name])
    config.add_optimization_profile(opt_profile)


_METADATA = re.compile(r"\[ONNX Layer: ([^\]]+)\]")


def _layer_nodes(layer, all_nodes: set[str]) -> set[str]:
    """ONNX node names a parsed layer came from.

    The parser names a node's first layer after the node and further layers ``<node>_<n>``;
    newer parsers also record ``[ONNX Layer: <node>]`` in ``ILayer.metadata``, which is read
    when the Python binding exposes it (the name rule is the fallback).
    """
    names = set(_METADATA.findall(getattr(layer, "metadata", "") or ""))
    name = layer.name
    if name in all_nodes:
        names.add(name)
    else:
        base = re.sub(r"_\d+$", "", name)
        if base != name and base in all_nodes:
            names.add(base)
    return names


def mark_fp32_layers(trt, network, keep: dict[str, str], all_nodes: set[str]) -> int:
    """Pin the layers of the ``keep`` nodes to FP32 (compute and float outputs).

    Returns:
        Number of layers marked.
    """
    floats = (trt.float32, trt.float16)
    marked = 0
    for i in range(network.num_layers):
        layer = network.get_layer(i)
        if layer.type == trt.LayerType.CONSTANT or not (
            _layer_nodes(layer, all_nodes) & keep.keys()
        ):
            continue
        inputs = [layer.get_input(j) for j in range(layer.num_inputs)]
        if any(t is not None and t.dtype not in floats for t in inputs):
            continue  # shape/int arithmetic: precision does not apply
        layer.precision = trt.float32
        for j in range(layer.num_outputs):
            if layer.get_output(j).dtype in floats:
                layer.set_output_type(j, trt.float32)
        marked += 1
    return marked
