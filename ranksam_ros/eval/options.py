"""What ``ranksam eval`` takes: one frozen options record with its choices, help and checks.

The field metadata (``help``, ``choices``, ``flag``, ...) is what ``ranksam_ros.cli_options``
turns into the command's flags, so defaults and choices are written here only.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ranksam_ros.config import (
    BACKENDS,
    DEGRADATIONS,
    PRECISIONS,
    SEVERITIES,
    TRAIN_SEVERITIES,
    TTA_MODES,
    BackendConfig,
    DataConfig,
    backend_config_of,
)

SEGMENT_PROMPTS = ("box", "point")  # one prompt per labelled segment: segment IoU
# No prompts given: semantic mIoU of automatic prompts, of SAM's grid generator, or of the
# dense semantic head alone (no decoder pass).
PROMPTLESS_MODES = ("auto", "grid", "semantic")
# The pipeline's panoptic output: PQ / SQ / RQ, semantic mIoU and boundary F-score.
PANOPTIC_MODE = "panoptic"
PROMPT_MODES = SEGMENT_PROMPTS + PROMPTLESS_MODES + (PANOPTIC_MODE,)
# One degradation (severity cycling over the frames) or a random training one per frame.
DEGRADE_MODES = ("none", *DEGRADATIONS, "mixed")


@dataclass(frozen=True)
class EvalOptions:
    """Arguments of ``ranksam eval`` (see ``ranksam eval --help``).

    The engine fields (model ... tta) are flat, as the command's flags are;
    :meth:`backend_config` gathers them. ``dataset`` names the classes and the ignored label
    of the frames in ``data`` (CamVid by default).
    """

    model: str = field(
        default=BackendConfig.model,
        metadata={"help": f"name or path (default {BackendConfig.model})"},
    )
    data: str = field(
        default="", metadata={"required": True, "help": "folder holding images/ and labels/"}
    )
    adapter: str = field(
        default=BackendConfig.adapter, metadata={"help": "adapter name or file, or none"}
    )
    prompts: str = field(
        default="box",
        metadata={
            "choices": PROMPT_MODES,
            "help": "box / point: one prompt per labelled segment (tight box, or one interior "
            "click); auto / grid / semantic: promptless semantic mIoU of our pipeline, of "
            "SAM's grid generator, or of the dense semantic head alone; panoptic: PQ, "
            "semantic mIoU and boundary F-score of the pipeline's output",
        },
    )
    degrade: str = field(default="none", metadata={"choices": DEGRADE_MODES})
    severities: tuple[int, ...] = field(
        default=TRAIN_SEVERITIES,
        metadata={
            "choices": SEVERITIES,
            "metavar": "LIST",
            "help": "comma-separated degradation severities the frames cycle through "
            "(default 1,2,3, the training range; 4 and 5 are heavier than training)",
        },
    )
    seed: int = 0
    limit: int = field(default=0, metadata={"help": "evaluate only the first N frames"})
    stride: int = field(
        default=1,
        metadata={"help": "every Nth frame (a short evaluation spread over whole sequences)"},
    )
    backend: str = field(default=BackendConfig.backend, metadata={"choices": BACKENDS})
    threads: int = field(
        default=BackendConfig.threads, metadata={"help": "CPU threads (0 = all cores)"}
    )
    precision: str = field(
        default=BackendConfig.precision,
        metadata={
            "choices": PRECISIONS,
            "help": "int8: onnxruntime's quantised encoder (export with --precision int8)",
        },
    )
    tta: str = field(
        default=BackendConfig.tta,
        metadata={
            "choices": TTA_MODES,
            "help": "test-time augmentation: flip averages each frame with its mirror (2x cost)",
        },
    )
    sequences: tuple[str, ...] = field(
        default=(),
        metadata={
            "metavar": "LIST",
            "help": "only frames whose file names start with one of these comma-separated "
            "prefixes, e.g. 0006R0 (a held-out sequence of --data)",
        },
    )
    pipeline_overrides: tuple[str, ...] = field(
        default=(),
        metadata={
            "flag": "--set",
            "action": "append",
            "metavar": "KEY=VALUE",
            "help": "override a pipeline config key (box prompts use box_mask_threshold and "
            "clip_to_box, clicks mask_threshold)",
        },
    )
    dataset: DataConfig = field(
        default_factory=DataConfig,
        metadata={
            "flag": "--data-config",
            "metavar": "YAML",
            "help": "DataConfig keys of the frames: class_names, num_classes, ignore_label, "
            "min_segment_area (default CamVid's 11 classes, label 11 ignored)",
        },
    )

    def __post_init__(self) -> None:
        for name, allowed in (("prompts", PROMPT_MODES), ("degrade", DEGRADE_MODES)):
            value = getattr(self, name)
            if value not in allowed:
                raise ValueError(f"--{name} {value!r}: choose one of {', '.join(allowed)}")
        if not self.severities or any(s not in SEVERITIES for s in self.severities):
            raise ValueError(
                f"--severities {list(self.severities)}: each must be one of {SEVERITIES}"
            )
        if self.limit < 0:
            raise ValueError(f"--limit must be >= 0 (0 = all frames), got {self.limit}")
        if self.stride < 1:
            raise ValueError(f"--stride must be >= 1, got {self.stride}")
        self.backend_config()  # checks backend, tta and threads

    def backend_config(self) -> BackendConfig:
        """The engine to evaluate, from the flat engine fields."""
        return backend_config_of(self)
