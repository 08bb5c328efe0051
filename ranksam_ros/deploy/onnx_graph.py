"""Static analysis of exported ONNX graphs: shapes, value dependence, fp32-sensitive nodes.

Everything here runs on the CPU with ``onnx`` alone, so the TensorRT readiness check and the
engine-build recipe can be computed (and tested) on a machine without a GPU.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
import onnx
from onnx import helper, numpy_helper, shape_inference

from ranksam_ros.deploy.trt_ops import SHAPE_INPUTS

# Shape sub-graphs hold tiny int64 tensors; anything larger is weights or activations.
FOLD_MAX_ELEMENTS = 4096
_NEVER_FOLD = frozenset(
    {"RandomNormal", "RandomNormalLike", "RandomUniform", "RandomUniformLike", "Bernoulli"}
    | {"Multinomial", "If", "Loop", "Scan", "NonZero", "Unique", "NonMaxSuppression"}
)
# The module attribute under which inject.py attaches a block's gate network.
GATE_MODULE = "gated_gate"

Dims = list[int | None]


def producers(graph: onnx.GraphProto) -> dict[str, onnx.NodeProto]:
    """Tensor name -> the node that writes it."""
    return {out: node for node in graph.node for out in node.output if out}


def consumers(graph: onnx.GraphProto) -> dict[str, list[onnx.NodeProto]]:
    """Tensor name -> the nodes that read it."""
    table: dict[str, list[onnx.NodeProto]] = {}
    for node in graph.node:
        for name in node.input:
            if name:
                table.setdefault(name, []).append(node)
    return table


def constant_names(graph: onnx.GraphProto) -> set[str]:
    """Initializers and outputs of ``Constant`` nodes (what the parser imports as weights)."""
    names = {init.name for init in graph.initializer}
    names |= {node.output[0] for node in graph.node if node.op_type == "Constant"}
    return names


def dims_of(value: onnx.ValueInfoProto) -> Dims | None:
    """Dimensions of a tensor value (None per symbolic/unknown dim; None if rank unknown)."""
    tensor = value.type.tensor_type
    if not tensor.HasField("shape"):
        return None
    return [d.dim_value if d.HasField("dim_value") else None for d in tensor.shape.dim]


def value_tainted_shape_inputs(graph: onnx.GraphProto) -> list[tuple[onnx.NodeProto, str]]:
    """Shape-giving inputs computed from tensor *values* of the graph inputs.

    ``Shape``/``Size`` outputs depend on shapes only, constants on nothing; every other op
    passes value dependence on.  A value-dependent ``Reshape`` shape, ``Expand`` shape, ``Range``
    limit... makes the op's output shape data dependent.

    Returns:
        ``(node, graph input name)`` pairs, one per offending node.
    """
    taint: dict[str, str] = {value.name: value.name for value in graph.input}
    for name in constant_names(graph):
        taint.pop(name, None)
    found = []
    for node in graph.node:
        for index in SHAPE_INPUTS.get(node.op_type, ()):
            if index < len(node.input) and node.input[index] in taint:
                found.append((node, taint[node.input[index]]))
                break
        if node.op_type in ("Shape", "Size", "Constant", "ConstantOfShape"):
            continue
        source = next((taint[i] for i in node.input if i in taint), None)
        if source is not None:
            taint.update({out: source for out in node.output})
    return found


def _strip_weights(model: onnx.ModelProto, dims: dict[str, int]) -> onnx.ModelProto:
    """A light copy: big initializers become typed inputs, symbolic input dims get values."""
    graph = model.graph
    small, inputs = [], []
    for init in graph.initializer:
        if int(np.prod(init.dims)) <= FOLD_MAX_ELEMENTS:
            small.append(init)
        else:
            inputs.append(helper.make_tensor_value_info(init.name, init.data_type, init.dims))
    for value in graph.input:
        shape = [
            dims.get(d.dim_param, d.dim_param or None)
            if not d.HasField("dim_value")
            else d.dim_value
            for d in value.type.tensor_type.shape.dim
        ]
        inputs.append(
            helper.make_tensor_value_info(value.name, value.type.tensor_type.elem_type, shape)
        )
    outputs = [helper.make_empty_tensor_value_info(value.name) for value in graph.output]
    light = helper.make_graph(list(graph.node), graph.name, inputs, outputs, initializer=small)
    return helper.make_model(light, opset_imports=model.opset_import, ir_version=model.ir_version)


def _known_shapes(model: onnx.ModelProto) -> dict[str, Dims | None]:
    try:
        inferred = shape_inference.infer_shapes(model, data_prop=True)
    except onnx.shape_inference.InferenceError:
        inferred = model
    graph = inferred.graph
    return {v.name: dims_of(v) for v in [*graph.input, *graph.value_info, *graph.output]}


def _fold_node(node: onnx.NodeProto, consts: dict, shapes: dict, opset: int) -> list | None:
    if node.op_type in ("Shape", "Size"):
        shape = shapes.get(node.input[0])
        if shape is None or None in shape:
            return None
        if node.op_type == "Size":
            return [np.array(int(np.prod(shape)), np.int64)]
        attrs = {a.name: a.i for a in node.attribute}
        return [np.array(shape[attrs.get("start", 0) : attrs.get("end", len(shape))], np.int64)]
    names = [name for name in node.input if name]
    if node.op_type in _NEVER_FOLD or not names or any(n not in consts for n in names):
        return None
    from onnx.reference import ReferenceEvaluator

    try:
        feeds = {name: consts[name] for name in names}
        return list(ReferenceEvaluator(node, opsets={"": opset}).run(None, feeds))
    except Exception:  # noqa: BLE001 - an op the reference runtime cannot run stays unfolded
        return None


def probe_shapes(
    model: onnx.ModelProto, dims: dict[str, int], max_passes: int = 30
) -> dict[str, Dims | None]:
    """Shapes of the graph outputs when the symbolic input dims take the values ``dims``.

    ONNX shape inference alone loses dimensions through the shape arithmetic torch emits
    (Shape -> Gather -> Div -> Concat -> Reshape).  This folds such sub-graphs into constants
    (Shape of a known shape, then any small all-constant node) and re-infers until nothing
    changes, i.e. what TensorRT's own shape analysis does for a fixed input shape.

    Args:
        model: The graph (weights are not copied).
        dims: Value of every symbolic input dimension name.
        max_passes: Fold / re-infer rounds before giving up.

    Returns:
        Output name -> dims (None where still unknown), or None for an unknown rank.
    """
    light = _strip_weights(model, dims)
    opset = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), 17)
    consts = {i.name: numpy_helper.to_array(i) for i in light.graph.initializer}
    for node in light.graph.node:
        if node.op_type == "Constant":
            consts[node.output[0]] = numpy_helper.to_array(node.attribute[0].t)
    for _ in range(max_passes):
        shapes = _known_shapes(light)
        folded = {}
        for node in light.graph.node:
            if node.op_type == "Constant" or all(out in consts for out in node.output):
                continue
            values = _fold_node(node, consts, shapes, opset)
            if values is not None and all(np.size(v) <= FOLD_MAX_ELEMENTS for v in values):
                folded.update(dict(zip(node.output, (np.asarray(v) for v in values))))
                consts.update(folded)
        if not folded:
            break
        _replace_with_constants(light, folded)
    shapes = _known_shapes(light)
    return {
        out.name: list(consts[out.name].shape) if out.name in consts else shapes.get(out.name)
        for out in model.graph.output
    }


def _replace_with_constants(model: onnx.ModelProto, folded: dict[str, np.ndarray]) -> None:
    graph = model.graph
    keep = [node for node in graph.node if not all(out in folded for out in node.output)]
    del graph.node[:]
    graph.node.extend(keep)
    graph.initializer.extend(numpy_helper.from_array(value, name) for name, value in folded.items())


def _scope(name: str) -> str:
    return name.rsplit("/", 1)[0] + "/" if "/" in name else ""


def _layernorm_pattern(pow_node: onnx.NodeProto, prod: dict, cons: dict) -> list[onnx.NodeProto]:
    """Decomposed LayerNorm around ``Pow``: ReduceMean, Sub, Pow, ReduceMean, Add, Sqrt, Div."""
    sub = prod.get(pow_node.input[0])
    mean = prod.get(sub.input[1]) if sub is not None and sub.op_type == "Sub" else None
    if mean is None or mean.op_type != "ReduceMean" or mean.input[0] != sub.input[0]:
        return []
    chain, tensor = [mean, sub, pow_node], pow_node.output[0]
    for op_type in ("ReduceMean", "Add", "Sqrt", "Div"):
        nxt = [n for n in cons.get(tensor, []) if n.op_type == op_type]
        if not nxt:
            return []
        chain.append(nxt[0])
        tensor = nxt[0].output[0]
    if chain[-1].input[0] != sub.output[0]:
        return []
    for op_type in ("Mul", "Add"):  # the affine weight and bias, same module scope
        nxt = [n for n in cons.get(tensor, []) if n.op_type == op_type]
        if len(nxt) != 1 or _scope(nxt[0].name) != _scope(pow_node.name):
            break
        chain.append(nxt[0])
        tensor = nxt[0].output[0]
    return chain


def _gate_branch(greater: onnx.NodeProto, prod: dict) -> list[onnx.NodeProto]:
    """Nodes from the gate's ReduceMean (pooling) up to its Greater (threshold), inclusive."""
    scope = _scope(greater.name)
    branch, stack, seen = [], [greater], set()
    while stack:
        node = stack.pop()
        if node.name in seen or node.op_type == "Constant" or not node.name.startswith(scope):
            continue
        seen.add(node.name)
        branch.append(node)
        if node.op_type != "ReduceMean":
            stack.extend(prod[i] for i in node.input if i in prod)
    has_pool = any(n.op_type == "ReduceMean" for n in branch)
    return branch if has_pool else []


def fp32_nodes(model: onnx.ModelProto) -> dict[str, str]:
    """Nodes to keep in FP32 under an FP16 engine, with the reason.

    * ``LayerNormalization`` nodes (opset >= 17) and the decomposed LayerNorm pattern (SAM's
      LayerNorm2d in the neck and the decoder's upscaler): FP16 overflows in the variance.
    * The gate branch of every gated block (``.../gated_gate/...``: pooling, two Gemms, GELU,
      up to the ``Greater`` threshold): a logit near 0 must not flip sign in FP16.

    Returns:
        Node name -> ``"layernorm"`` or ``"gate"``, in graph order.
    """
    graph = model.graph
    prod, cons = producers(graph), consumers(graph)
    chosen: dict[str, str] = {}
    for node in graph.node:
        if node.op_type == "LayerNormalization":
            chosen[node.name] = "layernorm"
        elif node.op_type == "Pow":
            chosen.update({n.name: "layernorm" for n in _layernorm_pattern(node, prod, cons)})
        elif node.op_type == "Greater" and f"/{GATE_MODULE}/" in node.name:
            chosen.update({n.name: "gate" for n in _gate_branch(node, prod)})
    order = [node.name for node in graph.node if node.name in chosen]
    return {name: chosen[name] for name in order if name}


def elem_types(model: onnx.ModelProto) -> Iterable[tuple[str, int, str]]:
    """``(tensor name, ONNX elem type, where)`` for IO, initializers, values, constants, casts."""
    graph = model.graph
    for value in graph.input:
        yield value.name, value.type.tensor_type.elem_type, "input"
    for value in graph.output:
        yield value.name, value.type.tensor_type.elem_type, "output"
    for init in graph.initializer:
        yield init.name, init.data_type, "initializer"
    for value in graph.value_info:
        if value.type.HasField("tensor_type"):
            yield value.name, value.type.tensor_type.elem_type, "value"
    for node in graph.node:
        for attr in node.attribute:
            if node.op_type == "Constant" and attr.type == onnx.AttributeProto.TENSOR:
                yield node.output[0], attr.t.data_type, "constant"
            elif node.op_type == "Cast" and attr.name == "to":
                yield node.output[0], attr.i, "cast"
