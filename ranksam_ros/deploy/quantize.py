"""int8 encoder for CPUs through ONNX Runtime dynamic quantisation, kept only if it agrees.

The parity gate decodes box prompts on bundled frames with the fp32 decoder from both the fp32
and the int8 embedding; the int8 encoder is accepted when the masks agree (mean IoU >= 0.95)
and, for a model with a semantic head, when its class maps agree (>= 98% of the cells: the
panoptic output's stuff and thing regions come from that map).
Whether it is also *faster* is measured by the benchmark script, not here. A gated encoder is
quantised from its per-token export (frozen weights constant, so quantisable), with its gate
branches left fp32.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ranksam_ros.graph import feeds as graph_feeds
from ranksam_ros.graph import names
from ranksam_ros.graph.prompts import boxes_to_prompts

MIN_MASK_IOU = 0.95
MIN_CLASS_AGREEMENT = 0.98
PARITY_FRAMES = 3
PARITY_BOXES = 16


def _sessions(out: Path, manifest: dict):
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = 2

    def make(name: str):
        return ort.InferenceSession(str(out / name), options, providers=["CPUExecutionProvider"])

    decoder = manifest["graphs"]["decoder"]["file"]
    return make("encoder.onnx"), make("encoder_int8.onnx"), make(decoder)


def _encode(session, tensor: np.ndarray):
    """Run an encoder session -> :class:`Encoded` (gate ranks are not needed here)."""
    return graph_feeds.encoded(graph_feeds.run_by_name(session, {names.IMAGE: tensor}), [])


def _frame_inputs(manifest: dict):
    """Preprocessed bundled frames and the boxes of their largest segments (input pixels)."""
    from ranksam_ros.config import CAMVID_CLASSES, CAMVID_IGNORE_LABEL
    from ranksam_ros.data.folder import BUNDLED_FRAMES, SegmentationFolder
    from ranksam_ros.data.segments import find_segments
    from ranksam_ros.graph.preprocess import preprocess

    folder = SegmentationFolder(BUNDLED_FRAMES)
    for index in range(PARITY_FRAMES):
        image, label = folder[index]
        tensor, geometry = preprocess(
            image, manifest["input_size"], manifest["pixel_mean"], manifest["pixel_std"]
        )
        # The bundled frames are CamVid's: their labels use its classes.
        segments = find_segments(label, len(CAMVID_CLASSES), 64, CAMVID_IGNORE_LABEL)
        segments = sorted(segments, key=lambda s: -s.area)
        boxes = np.array([s.box for s in segments[:PARITY_BOXES]], np.float64).reshape(-1, 2)
        yield tensor, geometry, geometry.to_input(boxes).reshape(-1, 4)


def _untangle(model):
    """Prepare a graph for ORT's quantiser, which mishandles two exporter habits.

    The exporter stores identical weights once and aliases the copies through Identity nodes
    (untrained zero gates are identical across blocks), and records intermediate shapes that go
    stale once Gemms are rewritten. Give every alias its own initializer and drop the shapes.
    """
    from onnx import numpy_helper

    initializers = {init.name: init for init in model.graph.initializer}
    kept = []
    for node in model.graph.node:
        if node.op_type == "Identity" and node.input[0] in initializers:
            array = numpy_helper.to_array(initializers[node.input[0]])
            model.graph.initializer.append(numpy_helper.from_array(array, node.output[0]))
        else:
            kept.append(node)
    del model.graph.node[:]
    model.graph.node.extend(kept)
    del model.graph.value_info[:]
    return model


def parity_summary(record: dict) -> str:
    """``mask IoU vs fp32 X[, class map agreement Y]`` of a parity record, for messages."""
    agreement = record.get("class_agreement_vs_fp32")
    classes = "" if agreement is None else f", class map agreement {agreement:.4f}"
    return f"mask IoU vs fp32 {record['mask_iou_vs_fp32']:.4f}{classes}"


def _class_agreement(probs32: np.ndarray, probs8: np.ndarray, geometry) -> float:
    """Share of the image's class-map cells (padding left out) where both encoders agree.

    Args:
        probs32: ``(C, G, G)`` class probabilities of the fp32 encoder.
        probs8: The same of the int8 encoder.
        geometry: The frame's :class:`ResizeInfo` (the padding is never output).
    """
    side = probs32.shape[-1]
    rows, cols = (max(1, int(np.ceil(n * side / geometry.input_size))) for n in geometry.resized_hw)
    classes = [np.argmax(p[:, :rows, :cols], axis=0) for p in (probs32, probs8)]
    return float(np.mean(classes[0] == classes[1]))


def _gate_branches(model) -> list[str]:
    """Nodes of the gate branches (pooling to threshold), which the quantiser must leave fp32.

    A gate logit near 0 must not flip sign, or the int8 encoder switches other rank-1
    components than the fp32 one and the two part ways.
    """
    from ranksam_ros.deploy.onnx_graph import fp32_nodes

    gates = [name for name, why in fp32_nodes(model).items() if why == "gate"]
    # The quantiser first rewrites every Gemm as MatMul + Add, naming the MatMul "<gemm>_MatMul".
    return gates + [f"{name}_MatMul" for name in gates]


def _write_int8(source: Path, out: Path) -> None:
    """Quantise ``source`` into ``out/encoder_int8.onnx``; the untangled copy never stays."""
    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic

    untangled = out / "encoder_for_int8.onnx"
    try:
        model = _untangle(onnx.load(str(source)))
        onnx.save(model, str(untangled))
        # MatMuls outside the gate branches; ORT's Gemm rewrite clashes with recorded shapes.
        quantize_dynamic(
            str(untangled),
            str(out / "encoder_int8.onnx"),
            weight_type=QuantType.QInt8,
            op_types_to_quantize=["MatMul"],
            nodes_to_exclude=_gate_branches(model),
        )
    finally:
        untangled.unlink(missing_ok=True)


def quantize_encoder(out: Path, manifest: dict, source: Path) -> dict:
    """Write ``encoder_int8.onnx`` and return its parity record (``accepted`` flag included).

    Args:
        out: Export directory holding ``encoder.onnx`` (the fp32 reference of the parity gate).
        manifest: The export manifest being written.
        source: Graph to quantise: ``encoder.onnx`` or an export of the same maths.
    """
    _write_int8(Path(source), out)
    fp32, int8, decoder = _sessions(out, manifest)
    decoder_inputs = [i.name for i in decoder.get_inputs()]
    cosines, ious, agreements = [], [], []
    for tensor, geometry, boxes in _frame_inputs(manifest):
        enc32, enc8 = _encode(fp32, tensor), _encode(int8, tensor)
        if enc32.semantic is not None:
            agreements.append(_class_agreement(enc32.semantic[0], enc8.semantic[0], geometry))
        emb32, emb8 = enc32.embedding, enc8.embedding
        cosines.append(
            float(
                np.dot(emb32.ravel(), emb8.ravel()) / (np.linalg.norm(emb32) * np.linalg.norm(emb8))
            )
        )
        coords, labels = boxes_to_prompts(boxes)
        masks = [
            graph_feeds.run_by_name(
                decoder, graph_feeds.decoder_feeds(enc, coords, labels, decoder_inputs)
            )[names.MASKS][:, 0]
            > 0
            for enc in (enc32, enc8)
        ]
        inter = np.logical_and(*masks).sum(axis=(1, 2))
        union = np.logical_or(*masks).sum(axis=(1, 2))
        ious.extend((inter / np.maximum(union, 1)).tolist())
    mean_iou = float(np.mean(ious))
    record = {
        "file": "encoder_int8.onnx",
        "embedding_cosine": float(np.mean(cosines)),
        "mask_iou_vs_fp32": mean_iou,
        "min_mask_iou": MIN_MASK_IOU,
        "accepted": mean_iou >= MIN_MASK_IOU,
    }
    if agreements:
        agreement = float(np.mean(agreements))
        record.update(class_agreement_vs_fp32=agreement, min_class_agreement=MIN_CLASS_AGREEMENT)
        record["accepted"] = record["accepted"] and agreement >= MIN_CLASS_AGREEMENT
    if not record["accepted"]:
        (out / "encoder_int8.onnx").unlink()  # nothing may run it: keep no rejected graph
    return record
