"""What the TensorRT ONNX parser accepts, as data: operators, opsets, data types, restrictions.

Facts come from the operator support matrix ``docs/operators.md`` of the onnx/onnx-tensorrt
repository (the parser TensorRT ships) and from its ``docs/Changelog.md``:

* ``8.6`` (JetPack 6.0): the stored matrix is the TensorRT 8.5 release ("supports operators up
  to Opset 17"); the 8.6 matrix itself was not available, so the 8.6 table is the 8.5 table plus
  the Changelog's 8.6 EA/GA entries (``GroupNormalization``, ``LayerNormalization``, ``IsInf``
  added; dynamic ``TopK`` K and dynamic-shape ``ReverseSequence`` allowed; N-D ``Trilu``).
  The opset ceiling 17 is the one stated for 8.5 and for 8.6.
* ``10`` (JetPack 6.1/6.2 ship 10.3; x86 wheels 10.x): the stored matrix is the TensorRT 10.15
  release; operators the Changelog lists as added after 10.3 are moved to
  :data:`ADDED_AFTER` so the table holds for every 10.x from 10.3 on.  The opset range 9..20
  is the one the 10.0 matrix states (10.15 states 9..24); the lower, older bound is used.

Only ``Y``/``N`` rows and the restrictions that can bite our exports are encoded; free-text
restrictions that cannot be checked statically are kept as notes for the report.
"""

from __future__ import annotations

from dataclasses import dataclass

TRT_VERSIONS = ("8.6", "10")

# Operators marked "Y" in both tables (the long common part), then per-version additions.
_COMMON = frozenset(
    """
    Abs Acos Acosh Add And ArgMax ArgMin Asin Asinh Atan Atanh AveragePool BatchNormalization
    Cast Ceil Celu Clip Concat Constant ConstantOfShape Conv ConvTranspose Cos Cosh CumSum
    DepthToSpace DequantizeLinear Div Dropout Einsum Elu Equal Erf Exp Expand EyeLike Flatten
    Floor Gather GatherElements GatherND Gemm GlobalAveragePool GlobalLpPool GlobalMaxPool
    Greater GreaterOrEqual GridSample GroupNormalization GRU HardSigmoid HardSwish Identity If
    ImageScaler InstanceNormalization IsInf IsNaN LayerNormalization LeakyRelu Less LessOrEqual
    Log LogSoftmax Loop LRN LSTM LpNormalization LpPool MatMul Max MaxPool Mean
    MeanVarianceNormalization Min Mod Mul Neg NonMaxSuppression NonZero Not OneHot Or Pad
    ParametricSoftplus Pow PRelu QuantizeLinear RandomNormal RandomNormalLike RandomUniform
    RandomUniformLike Range Reciprocal ReduceL1 ReduceL2 ReduceLogSum ReduceLogSumExp ReduceMax
    ReduceMean ReduceMin ReduceProd ReduceSum ReduceSumSquare Relu Reshape Resize
    ReverseSequence RNN RoiAlign Round ScaledTanh Scan Scatter ScatterElements ScatterND Selu
    Shape Shrink Sigmoid Sign Sin Sinh Size Slice Softmax Softplus Softsign SpaceToDepth Split
    Sqrt Squeeze Sub Sum Tan Tanh ThresholdedRelu Tile TopK Transpose Trilu Unsqueeze Upsample
    Where Xor
    """.split()
)

SUPPORTED: dict[str, frozenset[str]] = {
    "8.6": _COMMON,
    # 9.x/10.x additions present by 10.3: Hardmax (9.2), DeformConv (10.1), opset 15-20 ops.
    "10": _COMMON | frozenset({"CastLike", "DeformConv", "Gelu", "Hardmax", "Mish"}),
}

# Rows marked "N" (the parser rejects the node).
UNSUPPORTED: dict[str, frozenset[str]] = {
    "8.6": frozenset(
        """
        Bernoulli BitShift BlackmanWindow Compress ConcatFromSequence ConvInteger DFT Det
        DynamicQuantizeLinear HammingWindow HannWindow Hardmax MatMulInteger MaxRoiPool MaxUnpool
        MelWeightMatrix Multinomial NegativeLogLikelihoodLoss Optional OptionalGetElement
        OptionalHasElement QLinearConv QLinearMatMul STFT SequenceAt SequenceConstruct
        SequenceEmpty SequenceErase SequenceInsert SequenceLength SequenceMap
        SoftmaxCrossEntropyLoss SplitToSequence StringNormalizer TfIdfVectorizer Unique
        """.split()
    ),
    "10": frozenset(
        """
        AffineGrid Bernoulli BitShift BitwiseAnd BitwiseNot BitwiseOr BitwiseXor Col2Im
        CenterCropPad Compress ConcatFromSequence ConvInteger DFT Det DynamicQuantizeLinear
        ImageDecoder MatMulInteger MaxRoiPool MaxUnpool MelWeightMatrix Multinomial
        NegativeLogLikelihoodLoss Optional OptionalGetElement OptionalHasElement QLinearConv
        QLinearMatMul RegexFullMatch SequenceAt SequenceConstruct SequenceEmpty SequenceErase
        SequenceInsert SequenceLength SequenceMap SoftmaxCrossEntropyLoss SplitToSequence
        StringConcat StringNormalizer StringSplit TfIdfVectorizer Unique
        """.split()
    ),
}

# Supported in the latest 10.x matrix but only since the release given (after JetPack's 10.3).
ADDED_AFTER: dict[str, dict[str, str]] = {
    "8.6": {},
    "10": {
        "BlackmanWindow": "10.4",
        "HammingWindow": "10.4",
        "HannWindow": "10.4",
        "STFT": "10.5",
        "Attention": "10.14",
        "RMSNormalization": "10.15",
        "RotaryEmbedding": "10.15",
        "TensorScatter": "10.15",
    },
}

# Default-domain opset range (inclusive).  8.6 states only the ceiling.
OPSET_RANGE: dict[str, tuple[int, int]] = {"8.6": (1, 17), "10": (9, 20)}

# Operators whose output shape depends on tensor *values*.  The parser accepts some of them
# (NonZero, NonMaxSuppression since 8.5), but the engine then needs an output allocator and
# per-call shapes; our graphs must stay static apart from the declared prompt axes.
DATA_DEPENDENT_SHAPE_OPS: dict[str, str] = {
    "NonZero": "number of non-zero elements",
    "NonMaxSuppression": "number of kept boxes",
    "Unique": "number of unique values",
    "Compress": "number of selected elements",
    "StringSplit": "number of substrings",
}

# Control flow: branch/loop output shapes may differ per call; never expected in our graphs.
CONTROL_FLOW_OPS = frozenset({"If", "Loop", "Scan"})

# Inputs that name output shapes: if such an input is computed from tensor values (not from
# shapes or constants) the op's output shape is data dependent.
SHAPE_INPUTS: dict[str, tuple[int, ...]] = {
    "Reshape": (1,),
    "Expand": (1,),
    "Tile": (1,),
    "ConstantOfShape": (0,),
    "Range": (0, 1, 2),
    "Slice": (1, 2, 3, 4),
    "Resize": (2, 3),
    "Upsample": (1,),
    "OneHot": (1,),
    "TopK": (1,),
    "Pad": (1, 3),
    "Split": (1,),
    "Squeeze": (1,),
    "Unsqueeze": (1,),
    "CenterCropPad": (1,),
}

# ONNX TensorProto element types (numbers from onnx.TensorProto, kept here so the table does
# not import onnx).
ONNX_TYPES: dict[int, str] = {
    1: "FLOAT",
    2: "UINT8",
    3: "INT8",
    4: "UINT16",
    5: "INT16",
    6: "INT32",
    7: "INT64",
    8: "STRING",
    9: "BOOL",
    10: "FLOAT16",
    11: "DOUBLE",
    12: "UINT32",
    13: "UINT64",
    14: "COMPLEX64",
    15: "COMPLEX128",
    16: "BFLOAT16",
    17: "FLOAT8E4M3FN",
    18: "FLOAT8E4M3FNUZ",
    19: "FLOAT8E5M2",
    20: "FLOAT8E5M2FNUZ",
    21: "UINT4",
    22: "INT4",
    23: "FLOAT4E2M1",
}

# Types the parser handles natively.  DOUBLE is "limited": the parser casts it to FLOAT and
# clamps to +-FLT_MAX, which silently changes numerics, so it is rejected with STRING/COMPLEX.
# 8.x casts INT64 to INT32 (clamped); 9.0+ keeps INT64.  UINT8 only as network input/output.
TENSOR_TYPES: dict[str, frozenset[str]] = {
    "8.6": frozenset({"FLOAT", "FLOAT16", "INT8", "INT32", "INT64", "BOOL", "UINT8"}),
    "10": frozenset("FLOAT FLOAT16 BFLOAT16 FLOAT8E4M3FN INT8 INT4 INT32 INT64 BOOL UINT8".split()),
}
REJECTED_TYPES = frozenset({"DOUBLE", "STRING", "COMPLEX64", "COMPLEX128"})
IO_ONLY_TYPES = frozenset({"UINT8"})


@dataclass(frozen=True)
class OpRule:
    """A restriction from the matrix.

    Attributes:
        constant_inputs: Input indices that must be initializers / Constant outputs.
        note: The restriction in words (shown when the op is present).
        no_ellipsis: Einsum equations may not use ``...`` nor repeat an index in one operand.
        single_output: Only the first output may be consumed.
        attrs: Attribute name -> allowed values (absent attributes take ONNX defaults, which
            are allowed).
    """

    constant_inputs: tuple[int, ...] = ()
    note: str = ""
    no_ellipsis: bool = False
    single_output: bool = False
    attrs: tuple[tuple[str, tuple], ...] = ()


_REDUCE_AXES = OpRule((1,), "`axes` must be an initializer (opset >= 18 input)")
_RESIZE_ATTRS = (
    ("mode", ("nearest", "linear")),
    (
        "coordinate_transformation_mode",
        ("half_pixel", "pytorch_half_pixel", "tf_half_pixel_for_nn", "asymmetric", "align_corners"),
    ),
    ("nearest_mode", ("floor", "ceil", "round_prefer_floor", "round_prefer_ceil")),
    ("antialias", (0,)),
)
_RESIZE = OpRule(
    note="modes nearest/linear, listed transformation modes, no antialiasing", attrs=_RESIZE_ATTRS
)

RESTRICTIONS: dict[str, dict[str, OpRule]] = {
    "8.6": {
        "CumSum": OpRule((1,), "`axis` must be an initializer"),
        "Slice": OpRule((3,), "`axes` must be an initializer"),
        "Squeeze": OpRule((1,), "`axes` must be an initializer"),
        "Unsqueeze": OpRule((1,), "`axes` must be a constant tensor"),
        "Einsum": OpRule(
            note="no ellipsis, no diagonal, no broadcasting between inputs", no_ellipsis=True
        ),
        "DequantizeLinear": OpRule(note="`x_zero_point` must be zero"),
        "QuantizeLinear": OpRule(note="`y_zero_point` must be 0"),
        "Resize": _RESIZE,
        "ConstantOfShape": OpRule(note="FP32 values only"),
    },
    "10": {
        "CumSum": OpRule((1,), "`axis` must be a build-time constant"),
        "Squeeze": OpRule((1,), "`axes` must be resolvable to a constant"),
        "Unsqueeze": OpRule((1,), "`axes` must be resolvable to a constant"),
        "OneHot": OpRule((1,), "`depth` must be a build-time constant"),
        # Lifted in 10.12; JetPack's 10.3 still has it.
        "Einsum": OpRule(
            note="no ellipsis, no diagonal, no broadcasting (until 10.12)", no_ellipsis=True
        ),
        "LayerNormalization": OpRule(note="only the first output Y", single_output=True),
        "Dropout": OpRule((2,), "`is_training` must be an initializer evaluating to False"),
        "TopK": OpRule(note="`sorted` must be 1 and K < 3840", attrs=(("sorted", (1,)),)),
        "DequantizeLinear": OpRule(note="`x_zero_point` must be zero"),
        "QuantizeLinear": OpRule(note="`y_zero_point` must be 0"),
        "Resize": _RESIZE,
        **{
            op: _REDUCE_AXES
            for op in (
                "ReduceL1 ReduceL2 ReduceLogSum ReduceLogSumExp ReduceMax ReduceMean ReduceMin "
                "ReduceProd ReduceSum ReduceSumSquare"
            ).split()
        },
    },
}


def normalize_version(version: str) -> str:
    """``"10.3.0"`` -> ``"10"``, ``"8.6.1"`` -> ``"8.6"``; rejects versions without a table.

    Raises:
        ValueError: a version we have no table for (e.g. 8.5, 11).
    """
    text = str(version).strip()
    parts = text.split(".")
    key = "10" if parts[0] == "10" else ".".join(parts[:2])
    if key not in TRT_VERSIONS:
        raise ValueError(f"TensorRT {text!r}: no parser table; choose {' or '.join(TRT_VERSIONS)}")
    return key
