"""Frozen config dataclasses: the single source of every default.

YAML files, ``--set key=value`` overrides and ROS parameters all go through
:func:`ranksam_ros.config_loader.from_dict`, which refuses unknown keys. Each class
validates its own ranges in ``__post_init__`` so a bad value fails where it is read.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, fields, replace

CAMVID_CLASSES: tuple[str, ...] = (
    "sky",
    "building",
    "pole",
    "road",
    "pavement",
    "tree",
    "sign_symbol",
    "fence",
    "car",
    "pedestrian",
    "bicyclist",
)
CAMVID_IGNORE_LABEL = 11
# CamVid's countable classes (instances); the others are stuff.
THING_CLASSES: tuple[str, ...] = ("pole", "sign_symbol", "car", "pedestrian", "bicyclist")
PIPELINE_MODES = ("panoptic", "instances")
THING_PROMPTS = ("box", "centre", "predictor")  # what panoptic mode prompts SAM with for things
THING_MASK_SOURCES = ("sam", "regions")  # what makes panoptic mode's thing instances
DEGRADATIONS: tuple[str, ...] = ("noise", "blur", "lowlight", "fog", "motion")
TRAIN_DEGRADATIONS: tuple[str, ...] = ("noise", "blur", "lowlight", "fog")
SEVERITIES: tuple[int, ...] = (1, 2, 3, 4, 5)
TRAIN_SEVERITIES: tuple[int, ...] = (1, 2, 3)  # 4 and 5 lie beyond training: extrapolation tests


def check(condition: bool, message: str) -> None:
    """Raise ``ValueError(message)`` unless ``condition`` (field validation)."""
    if not condition:
        raise ValueError(message)


def check_choice(name: str, value: str, allowed: tuple[str, ...]) -> None:
    """Raise ``ValueError`` naming ``name``, ``value`` and ``allowed`` unless it is one of them."""
    check(value in allowed, f"{name}={value!r} is not one of {', '.join(allowed)}")


_check, _check_choice = check, check_choice


ENCODERS = ("vit", "conv")  # SAM's ViT, or the CNN of modeling/conv_encoder.py


@dataclass(frozen=True)
class SamArchConfig:
    """Numbers of a SAM built from segment-anything's own classes (see modeling/build.py).

    ``encoder``: ``vit`` (SAM's ``ImageEncoderViT``: ``embed_dim`` ... ``use_rel_pos``) or
    ``conv`` (``ConvImageEncoder``: ``conv_widths`` / ``conv_depths`` at strides 4, 8, 16; its
    stride-4 features reach the mask decoder). ``semantic_classes``: a dense semantic head on
    the encoder, one channel per name (empty: none).
    """

    encoder: str = "vit"
    img_size: int = 256
    patch_size: int = 16
    embed_dim: int = 192
    depth: int = 6
    num_heads: int = 6
    mlp_ratio: float = 4.0
    out_chans: int = 128
    window_size: int = 4
    global_attn_indexes: tuple[int, ...] = (2, 5)
    use_rel_pos: bool = True
    decoder_depth: int = 2
    decoder_mlp_dim: int = 512
    decoder_heads: int = 4
    iou_head_hidden_dim: int = 128
    mask_in_chans: int = 16
    # Detail head (modeling/detail_head.py): SAM's masks corrected with pixel detail from a
    # small stem on the input. Not part of official SAM; False keeps the plain decoder.
    detail_head: bool = False
    conv_widths: tuple[int, ...] = (32, 64, 256)
    conv_depths: tuple[int, ...] = (2, 2, 6)
    semantic_classes: tuple[str, ...] = ()
    pixel_mean: tuple[float, float, float] = (123.675, 116.28, 103.53)
    pixel_std: tuple[float, float, float] = (58.395, 57.12, 57.375)

    def __post_init__(self) -> None:
        _check_choice("arch.encoder", self.encoder, ENCODERS)
        _check(self.img_size % self.patch_size == 0, "img_size must be a multiple of patch_size")
        if self.encoder == "conv":
            _check(self.patch_size == 16, "the conv encoder has stride 16: patch_size must be 16")
            _check(not self.detail_head, "the conv encoder brings its own fine features")
            _check(
                len(self.conv_widths) == 3 and len(self.conv_depths) == 3,
                "arch.conv_widths and arch.conv_depths need 3 values (strides 4, 8, 16)",
            )
        _check(self.embed_dim % self.num_heads == 0, "embed_dim must divide by num_heads")
        _check(
            all(0 <= i < self.depth for i in self.global_attn_indexes), "bad global_attn_indexes"
        )

    @property
    def embedding_size(self) -> int:
        """Side of the image-embedding grid (tokens per side)."""
        return self.img_size // self.patch_size

    @property
    def mask_size(self) -> int:
        """Side of the decoder's low-resolution mask logits (4x the embedding grid)."""
        return 4 * self.embedding_size


@dataclass(frozen=True)
class DegradeConfig:
    """Synthetic camera degradations applied on the fly (adapter training)."""

    kinds: tuple[str, ...] = TRAIN_DEGRADATIONS
    clean_prob: float = 0.2
    severities: tuple[int, ...] = TRAIN_SEVERITIES

    def __post_init__(self) -> None:
        for kind in self.kinds:
            _check_choice("degrade.kinds", kind, DEGRADATIONS)
        _check(0.0 <= self.clean_prob <= 1.0, "degrade.clean_prob must be in [0, 1]")
        _check(
            bool(self.severities) and all(s in SEVERITIES for s in self.severities),
            f"degrade.severities must be a non-empty list of {SEVERITIES}",
        )


@dataclass(frozen=True)
class DataConfig:
    """Where the data lives and how segments and prompts are sampled."""

    root: str = ""
    class_names: tuple[str, ...] = CAMVID_CLASSES
    train_split: str = "train"
    val_split: str = "val"
    num_classes: int = 11
    ignore_label: int = CAMVID_IGNORE_LABEL
    min_segment_area: int = 64
    prompts_per_image: int = 16
    point_prompt_prob: float = 0.3
    box_jitter: float = 0.1
    zoom_prob: float = 0.5
    max_zoom: float = 1.6
    # Below 1 the frame also shrinks onto a padded canvas (zoom drawn log-uniformly).
    min_zoom: float = 1.0
    flip: bool = True
    color_jitter: float = 0.2
    # Another camera's look: white-balance gains within 1 ± style_jitter, gamma in
    # exp(± 2 style_jitter); and the chance of a grey frame (data/augment.py: style_jitter).
    style_jitter: float = 0.0
    grayscale_prob: float = 0.0
    degrade: DegradeConfig = field(default_factory=DegradeConfig)
    apply_degrade: bool = False
    cache_images: bool = True
    # Sequences (file-name prefixes, e.g. 0006R0) left out of training: the honest
    # held-out set on which recipes and models are chosen.
    holdout_sequences: tuple[str, ...] = ()
    # Share of point prompts that are exactly one click (the rest have 1-3 points).
    one_click_prob: float = 0.0
    # Chance per frame to paste one class region of a thing class from another frame.
    copy_paste_prob: float = 0.0
    # Countable classes: instances (and copy-paste) only for these; the rest is stuff.
    thing_classes: tuple[str, ...] = THING_CLASSES

    def __post_init__(self) -> None:
        _check(self.min_segment_area >= 1, "data.min_segment_area must be >= 1")
        _check(self.prompts_per_image >= 1, "data.prompts_per_image must be >= 1")
        _check(0.0 <= self.point_prompt_prob <= 1.0, "data.point_prompt_prob must be in [0, 1]")
        _check(self.max_zoom >= 1.0, "data.max_zoom must be >= 1")
        _check(0.1 <= self.min_zoom <= 1.0, "data.min_zoom must be in [0.1, 1]")
        _check(0.0 <= self.one_click_prob <= 1.0, "data.one_click_prob must be in [0, 1]")
        _check(0.0 <= self.copy_paste_prob <= 1.0, "data.copy_paste_prob must be in [0, 1]")
        _check(0.0 <= self.style_jitter <= 0.5, "data.style_jitter must be in [0, 0.5]")
        _check(0.0 <= self.grayscale_prob <= 1.0, "data.grayscale_prob must be in [0, 1]")
        unknown = sorted(set(self.thing_classes) - set(self.class_names))
        _check(not unknown, f"data.thing_classes {unknown} are not in data.class_names")
        _check(
            len(self.class_names) == self.num_classes,
            "data.class_names must list num_classes names",
        )


@dataclass(frozen=True)
class PromptConfig:
    """Automatic prompts: peak extraction on the confidence maps and redundant-prompt deletion.

    Spacing is in cells of the confidence grid (twice the token grid: 8 input pixels per cell
    for patch-16 encoders).
    """

    smoothing_sigma: float = 1.0
    threshold: float = 0.15
    min_spacing: int = 2
    cross_class_spacing: int = 2
    max_prompts: int = 64
    decode_batch: int = 8
    multimask: bool = True
    min_pred_iou: float = 0.25
    delete_redundant: bool = True
    inside_mask_iou: float = 0.7
    elimination_threshold: float = 0.0
    class_source: str = "pooled"

    def __post_init__(self) -> None:
        _check(self.smoothing_sigma >= 0, "prompts.smoothing_sigma must be >= 0")
        _check(0.0 <= self.threshold <= 1.0, "prompts.threshold must be in [0, 1]")
        _check(self.min_spacing >= 0, "prompts.min_spacing must be >= 0")
        _check(self.cross_class_spacing >= 0, "prompts.cross_class_spacing must be >= 0")
        _check(1 <= self.max_prompts <= 4096, "prompts.max_prompts must be in [1, 4096]")
        _check(1 <= self.decode_batch <= 1024, "prompts.decode_batch must be in [1, 1024]")
        _check(0.0 <= self.min_pred_iou <= 1.0, "prompts.min_pred_iou must be in [0, 1]")
        _check(0.0 <= self.inside_mask_iou <= 1.0, "prompts.inside_mask_iou must be in [0, 1]")
        _check(0.0 <= self.elimination_threshold <= 1.0, "prompts.elimination_threshold in [0, 1]")
        _check_choice("prompts.class_source", self.class_source, ("prompt", "pooled"))


TTA_MODES = ("none", "flip")  # test-time augmentation of a backend (backends/flip_tta.py)
BACKENDS = ("torch", "onnxruntime", "tensorrt")  # inference engines (ranksam_ros/backends)
PRECISIONS = ("fp32", "int8")  # encoder precision at run time (int8: onnxruntime, an export's)
EXPORT_PRECISIONS = ("fp32", "fp16", "int8")  # ranksam export (deploy/export.py)
EXPORT_OPSET = 17  # the highest the TensorRT 8.6 parser takes (deploy/trt_ops.py)
ENGINE_PRECISIONS = ("fp16", "fp32")  # ranksam build-engine (deploy/trt_build.py)


@dataclass(frozen=True)
class BackendConfig:
    """Which engine runs which model (``ranksam_ros.backends.create_backend``).

    ``model``: for ``torch`` a model name or path; for the other engines an export directory
    (``ranksam export`` output) or a model name whose export is cached. ``adapter``: adapter
    name/path or ``none`` (torch only; exports carry theirs). ``threads``: CPU threads (0 =
    the library's default). ``tta``: ``none`` or ``flip`` (frame and mirror image averaged,
    twice the cost; ``ranksam_ros/backends/flip_tta.py``). ``tasks``: dense task outputs of
    the model's multi-task set to compute besides the segmentation (e.g. ``boundary``,
    ``centre``; empty: none, and the set is not loaded). ``prompt_adapter``: a decoder
    adapter set of the model (PA-SAM, e.g. ``pa_sam``) or ``none``; it stacks on ``adapter``.
    ``precision``: ``fp32`` or ``int8`` (onnxruntime only: the export's dynamically quantised
    encoder, present when ``ranksam export --precision int8`` accepted it; TensorRT runs the
    engines ``ranksam build-engine`` made, fp16 by default).
    """

    backend: str = "torch"
    # The shipped convolutional model (foundation 2; docs/design.md); the ViT model
    # `camvid-tiny` stays shipped by that name.
    model: str = "camvid-conv"
    adapter: str = "none"
    prompt_adapter: str = "none"
    threads: int = 0
    tta: str = "none"
    tasks: tuple[str, ...] = ()
    precision: str = "fp32"

    def __post_init__(self) -> None:
        _check_choice("backend", self.backend, BACKENDS)
        _check_choice("tta", self.tta, TTA_MODES)
        _check_choice("precision", self.precision, PRECISIONS)
        _check(
            self.precision == "fp32" or self.backend == "onnxruntime",
            f"precision {self.precision} runs on the onnxruntime backend, not on {self.backend}",
        )
        _check(self.threads >= 0, f"threads must be >= 0, got {self.threads}")
        _check(
            "+" not in self.prompt_adapter,
            f"prompt_adapter names one decoder set, got {self.prompt_adapter!r}",
        )

    @property
    def adapter_spec(self) -> str:
        """The adapter sets to load, ``+``-joined (``gated+pa_sam``), or ``none``."""
        sets = [s for s in (self.adapter, self.prompt_adapter) if s not in ("", "none")]
        return "+".join(sets) or "none"


def backend_config_of(options) -> BackendConfig:
    """The :class:`BackendConfig` of a record with flat engine fields of the same names."""
    return BackendConfig(
        **{f.name: getattr(options, f.name, f.default) for f in fields(BackendConfig)}
    )


# The box cut of a model without a calibrated one: -0.75 was the best box mIoU on CamVid val
# for the ViT model camvid-tiny that kept large segments at 0.80 (scripts/calibrate_threshold.py).
DEFAULT_BOX_MASK_THRESHOLD = -0.75


@dataclass(frozen=True)
class PipelineConfig:
    """Everything between a decoded mask and the published result."""

    prompts: PromptConfig = field(default_factory=PromptConfig)
    # Logit cut of masks from points (automatic or given prompts).
    mask_threshold: float = 0.0
    # Logit cut of masks from box prompts. The loss puts logit 0 where a pixel is as likely in
    # as out, but the IoU-optimal cut lies lower; clipped to their box, box masks cannot
    # spill far, so they take it. None: the model's own cut, calibrated on a sequence held out
    # from its training and stored in its model card (``model.json``: ``calibration``), else
    # DEFAULT_BOX_MASK_THRESHOLD. Automatic masks have no box to stop them and lose 1.6 points
    # of semantic mIoU at -1.0, so they keep ``mask_threshold`` (the panoptic output's
    # region-box prompts too: the class map cuts them instead of their box).
    box_mask_threshold: float | None = None
    nms_iou: float = 0.7
    min_area: int = 16
    max_instances: int = 100
    score_threshold: float = 0.0
    # Pixels no mask covers take the prompt predictor's most likely class, so the semantic map
    # is dense (instances and instance ids are unaffected).
    fill_semantic: bool = True
    # Masks of box prompts lose the pixels outside their box (the object is inside it).
    clip_to_box: bool = True
    # "panoptic": with a model that has a semantic head, its dense class map is the semantic
    # output, automatic prompts come only from thing classes and instances keep only pixels
    # of their class. "instances": masks for every class, named by pooling (the first
    # foundation's output; models without a semantic head always run it).
    mode: str = "panoptic"
    thing_classes: tuple[str, ...] = THING_CLASSES
    # Panoptic mode's automatic thing prompts, one per thing region of the semantic head's
    # class map (pipeline/panoptic.py), so the prompt predictor does not run: "box" its
    # bounding box, "centre" a click at its most interior cell; or "predictor": clicks at the
    # prompt predictor's peaks on the thing channels (docs/results.md, panoptic).
    thing_prompts: str = "box"
    # Panoptic mode's thing instances: "sam" decodes a mask per thing prompt (touching objects
    # of one class stay apart); "regions" makes each connected thing region of the class map
    # one instance with no decoder call at all (fastest; touching objects merge).
    thing_masks: str = "sam"

    def __post_init__(self) -> None:
        _check_choice("pipeline.mode", self.mode, PIPELINE_MODES)
        _check_choice("pipeline.thing_prompts", self.thing_prompts, THING_PROMPTS)
        _check_choice("pipeline.thing_masks", self.thing_masks, THING_MASK_SOURCES)
        _check(0.0 < self.nms_iou <= 1.0, "nms_iou must be in (0, 1]")
        _check(
            self.box_mask_threshold is None or math.isfinite(self.box_mask_threshold),
            "box_mask_threshold must be a finite number (or unset: the model's own cut)",
        )
        _check(self.min_area >= 0, "min_area must be >= 0")
        _check(1 <= self.max_instances <= 65535, "max_instances must be in [1, 65535]")
        _check(0.0 <= self.score_threshold <= 1.0, "score_threshold must be in [0, 1]")

    def for_model(self, calibrated_box_cut: float | None) -> PipelineConfig:
        """This config with an unset ``box_mask_threshold`` filled in for one model.

        Args:
            calibrated_box_cut: The model's calibrated box cut (``ModelInfo``), or None.
        """
        if self.box_mask_threshold is not None:
            return self
        cut = DEFAULT_BOX_MASK_THRESHOLD if calibrated_box_cut is None else calibrated_box_cut
        return replace(self, box_mask_threshold=float(cut))
