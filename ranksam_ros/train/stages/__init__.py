"""Training stages as objects: one class per kind of run, one row each in :data:`STAGES`."""

from __future__ import annotations

from ranksam_ros.data.folder import SegmentationFolder
from ranksam_ros.train.config import TrainConfig
from ranksam_ros.train.stages.adapter import AdapterStage
from ranksam_ros.train.stages.base import TrainingStage
from ranksam_ros.train.stages.foundation import FoundationStage
from ranksam_ros.train.stages.multitask import MultiTaskStage
from ranksam_ros.train.stages.prompt import PromptPredictorStage

STAGES: dict[str, type[TrainingStage]] = {
    "foundation": FoundationStage,
    "adapter": AdapterStage,
    "prompt": PromptPredictorStage,
    "multitask": MultiTaskStage,
}


def make_stage(cfg: TrainConfig, folder: SegmentationFolder) -> TrainingStage:
    """The stage object of ``cfg.stage``; ``ValueError`` lists the stages."""
    try:
        stage = STAGES[cfg.stage]
    except KeyError:
        raise ValueError(f"stage={cfg.stage!r} is not one of {', '.join(STAGES)}") from None
    return stage(cfg, folder)


__all__ = ["STAGES", "TrainingStage", "make_stage"]
