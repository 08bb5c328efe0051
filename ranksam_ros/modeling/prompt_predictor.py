"""Prompt predictor: image embedding + a light RGB branch -> per-class prompt-confidence maps.

Follows the AoP-SAM design RankSAM describes: a small CNN on the raw image (fine detail the
16-pixel tokens lose) fused with SAM's embedding, predicting for every class a confidence map
whose peaks sit at segment interiors. A second set of channels holds dense class logits; pooled
over a decoded mask they name the mask's class (the "mask-pooled classifier").
"""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from ranksam_ros.checkpoint import load_tensors, save_tensors
from ranksam_ros.config import SamArchConfig

PREDICTOR_FILE = "prompt_predictor.safetensors"


def _conv(cin: int, cout: int, stride: int = 1) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(cin, cout, 3, stride=stride, padding=1, bias=False),
        nn.BatchNorm2d(cout),
        nn.ReLU(inplace=True),
    )


class PromptPredictor(nn.Module):
    """Per-class prompt-confidence maps and dense class logits at twice the token grid.

    Args:
        embed_dim: Channels of SAM's image embedding.
        class_names: One channel pair per class.
        width: Trunk width.
        rgb_width: Width of the RGB branch's last stage.
        image_size: Side of the (padded) network input; the RGB branch sees it at stride 8,
            which is twice the token grid for patch-16 encoders.
    """

    def __init__(
        self,
        embed_dim: int,
        class_names: tuple[str, ...],
        width: int = 96,
        rgb_width: int = 64,
        image_size: int = 384,
        patch_size: int = 16,
    ) -> None:
        super().__init__()
        self.class_names = tuple(class_names)
        self.config = {
            "embed_dim": embed_dim,
            "class_names": list(class_names),
            "width": width,
            "rgb_width": rgb_width,
            "image_size": image_size,
            "patch_size": patch_size,
        }
        self.grid = 2 * image_size // patch_size
        self.embed_proj = nn.Sequential(nn.Conv2d(embed_dim, width, 1), nn.ReLU(inplace=True))
        self.rgb = nn.Sequential(
            _conv(3, rgb_width // 2, 2),
            _conv(rgb_width // 2, rgb_width, 2),
            _conv(rgb_width, rgb_width, 2),
        )
        self.trunk = nn.Sequential(_conv(width + rgb_width, width), _conv(width, width))
        self.head = nn.Conv2d(width, 2 * len(class_names), 1)
        nn.init.constant_(self.head.bias[: len(class_names)], -4.0)  # maps start near 0

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    def forward_logits(self, embedding: torch.Tensor, image: torch.Tensor) -> torch.Tensor:
        """Raw outputs ``(B, 2C, G, G)``: confidence logits, then class logits.

        Args:
            embedding: ``(B, embed_dim, g, g)``.
            image: The normalised, padded network input ``(B, 3, S, S)``.
        """
        grid = self.grid
        emb = F.interpolate(
            self.embed_proj(embedding), (grid, grid), mode="bilinear", align_corners=False
        )
        rgb = self.rgb(image)
        if rgb.shape[-1] != grid:
            rgb = F.interpolate(rgb, (grid, grid), mode="bilinear", align_corners=False)
        return self.head(self.trunk(torch.cat([emb, rgb], dim=1)))

    def forward(
        self, embedding: torch.Tensor, image: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Sigmoid prompt confidences and softmax class probabilities, each ``(B, C, G, G)``."""
        logits = self.forward_logits(embedding, image)
        confidence = torch.sigmoid(logits[:, : self.num_classes])
        classes = torch.softmax(logits[:, self.num_classes :], dim=1)
        return confidence, classes


def build_prompt_predictor(arch: SamArchConfig, class_names: tuple[str, ...]) -> PromptPredictor:
    """A fresh predictor sized for ``arch``."""
    return PromptPredictor(
        arch.out_chans, class_names, image_size=arch.img_size, patch_size=arch.patch_size
    )


def save_prompt_predictor(
    path: str | Path, predictor: PromptPredictor, info: dict | None = None
) -> None:
    """Weights + constructor config (safetensors)."""
    meta = {"kind": "prompt_predictor", "config": predictor.config, "info": info or {}}
    save_tensors(path, predictor.state_dict(), meta)


def load_prompt_predictor(path: str | Path, arch: SamArchConfig) -> PromptPredictor:
    """Load a predictor and check it fits the model's embedding and input size."""
    tensors, meta = load_tensors(path, "prompt_predictor")
    config = dict(meta["config"])
    if config["embed_dim"] != arch.out_chans or config["image_size"] != arch.img_size:
        raise ValueError(
            f"{path}: predictor built for embed_dim {config['embed_dim']} / input "
            f"{config['image_size']}, model has {arch.out_chans} / {arch.img_size}"
        )
    config["class_names"] = tuple(config["class_names"])
    predictor = PromptPredictor(**config)
    predictor.load_state_dict(tensors, strict=True)
    return predictor.eval()
