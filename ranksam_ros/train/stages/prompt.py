"""Training the prompt predictor on frozen SAM embeddings.

Targets per frame: for every segment a Gaussian blob (peak exactly 1) at its most interior
point on its class's confidence map, and the class of every grid cell for the dense class
logits. Losses: CenterNet's penalty-reduced focal loss on the maps, cross-entropy on classes.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ranksam_ros.config import DataConfig, SamArchConfig
from ranksam_ros.data.folder import SegmentationFolder
from ranksam_ros.data.segments import find_segments, interior_point
from ranksam_ros.graph.preprocess import normalize_pad
from ranksam_ros.modeling.prompt_predictor import (
    PREDICTOR_FILE,
    PromptPredictor,
    build_prompt_predictor,
    save_prompt_predictor,
)
from ranksam_ros.modeling.ranksam import RankSam
from ranksam_ros.modeling.registry import build_model
from ranksam_ros.train.losses import centernet_focal
from ranksam_ros.train.samples import prepare_frame
from ranksam_ros.train.stages.base import TrainingStage

IGNORE_INDEX = -100
BLOB_SIGMA = 1.0


@dataclass
class PromptSample:
    """One frame for the prompt predictor: input, peak targets ``(C, G, G)``, classes ``(G, G)``."""

    image: torch.Tensor
    heatmap: torch.Tensor
    classes: torch.Tensor


def peak_targets(
    label: np.ndarray, grid: int, cell: float, cfg: DataConfig, min_area: int
) -> np.ndarray:
    """Max-merged Gaussian blobs at segment interiors, one map per class ``(C, G, G)``."""
    heatmap = np.zeros((cfg.num_classes, grid, grid), np.float32)
    ys, xs = np.mgrid[0:grid, 0:grid]
    for seg in find_segments(label, cfg.num_classes, min_area, cfg.ignore_label):
        x, y = interior_point(seg.mask, seg.box)
        col, row = min(int(x / cell), grid - 1), min(int(y / cell), grid - 1)
        blob = np.exp(-((xs - col) ** 2 + (ys - row) ** 2) / (2 * BLOB_SIGMA**2))
        np.maximum(heatmap[seg.class_id], blob, out=heatmap[seg.class_id])
    return heatmap


def class_targets(label: np.ndarray, grid: int, cell: float, cfg: DataConfig) -> np.ndarray:
    """Class of each grid cell (label at the cell centre); ignore and padding -> -100."""
    centres = ((np.arange(grid) + 0.5) * cell).astype(np.int64)
    out = np.full((grid, grid), IGNORE_INDEX, np.int64)
    rows, cols = centres[centres < label.shape[0]], centres[centres < label.shape[1]]
    sampled = label[np.ix_(rows, cols)].astype(np.int64)
    sampled[(sampled >= cfg.num_classes) | (sampled == cfg.ignore_label)] = IGNORE_INDEX
    out[: len(rows), : len(cols)] = sampled
    return out


def make_prompt_sample(
    folder: SegmentationFolder,
    index: int,
    arch: SamArchConfig,
    grid: int,
    cfg: DataConfig,
    rng: np.random.Generator,
) -> PromptSample:
    """Augmented (optionally degraded) frame with its predictor targets."""
    frame = prepare_frame(folder, index, arch, cfg, rng)
    resized, small, min_area = frame.resized, frame.label, frame.min_area
    cell = arch.img_size / grid
    return PromptSample(
        image=torch.from_numpy(
            normalize_pad(resized, arch.img_size, arch.pixel_mean, arch.pixel_std)
        ),
        heatmap=torch.from_numpy(peak_targets(small, grid, cell, cfg, min_area)),
        classes=torch.from_numpy(class_targets(small, grid, cell, cfg)),
    )


class PromptPredictorLoss(nn.Module):
    """Frozen encoder -> predictor -> focal + cross-entropy."""

    def __init__(
        self, model: RankSam, predictor: PromptPredictor, class_weight: float = 1.0
    ) -> None:
        super().__init__()
        self.model = model
        self.predictor = predictor
        self.class_weight = class_weight

    def forward(self, samples: list[PromptSample]) -> tuple[torch.Tensor, dict[str, float]]:
        images = torch.stack([s.image for s in samples])
        with torch.no_grad():
            embeddings = self.model.encode(images)
        logits = self.predictor.forward_logits(embeddings, images)
        classes = self.predictor.num_classes
        heat = torch.stack([s.heatmap for s in samples])
        focal = centernet_focal(logits[:, :classes], heat)
        ce = F.cross_entropy(
            logits[:, classes:],
            torch.stack([s.classes for s in samples]),
            ignore_index=IGNORE_INDEX,
        )
        loss = focal + self.class_weight * ce
        return loss, {"peak_loss": float(focal.detach()), "class_loss": float(ce.detach())}


class PromptPredictorStage(TrainingStage):
    """A new prompt predictor on the frozen model's embeddings."""

    output_file = PREDICTOR_FILE

    def build_model(self) -> RankSam:
        self.check_no_freeze()
        model = build_model(self.cfg.model)
        for param in model.parameters():
            param.requires_grad_(False)
        model.prompt_predictor = build_prompt_predictor(
            model.arch, tuple(self.cfg.data.class_names)
        )
        return model.train()

    def build_loss(self) -> nn.Module:
        return PromptPredictorLoss(self.model, self.model.prompt_predictor)

    def make_sample(self, index: int, rng: np.random.Generator) -> PromptSample:
        grid = self.model.prompt_predictor.grid
        return make_prompt_sample(self.folder, index, self.model.arch, grid, self.cfg.data, rng)

    def trained_module(self) -> nn.Module:
        return self.model.prompt_predictor

    def save(self, out_dir: Path, info: dict) -> Path:
        path = out_dir / self.output_file
        save_prompt_predictor(path, self.model.prompt_predictor, info)
        return path
