"""A convolutional SAM image encoder for small data and CPUs (``arch.encoder = "conv"``).

A ViT trained from scratch on a few hundred frames has no inductive bias to fall back on, and
its 16-pixel tokens lose thin objects. Like the SAM variants that run on robots
(EfficientViT-SAM, EdgeSAM, NanoSAM), this encoder replaces SAM's ViT and keeps SAM's prompt
encoder and mask decoder: it emits the same ``(B, out_chans, S/16, S/16)`` embedding, so it
plugs into ``segment_anything.modeling.Sam`` as its ``image_encoder``.

Layout (torchvision building blocks):

* stride 2-8: ResNet ``BasicBlock`` stages (BatchNorm, 3x3 convolutions): local texture and
  edges, the bias small data needs;
* stride 16: ConvNeXt ``CNBlock`` stages (7x7 depthwise, LayerNorm, a channels-last MLP of two
  ``nn.Linear``): a wide receptive field for context, and linears in the middle of the encoder
  for the low-rank adapters (``adapter_blocks`` names them and their gate input);
* a SAM neck (1x1 conv, LN, 3x3 conv, LN) to the embedding;
* fine features at stride 4 (the decoder's mask grid) fused from all three strides, which the
  mask decoder adds to its upscaled embedding (see :mod:`ranksam_ros.modeling.fine_fusion`),
  so poles, signs and pedestrians survive the 16-pixel tokens.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from segment_anything.modeling.common import LayerNorm2d
from torch import nn
from torchvision.models.convnext import CNBlock
from torchvision.models.resnet import BasicBlock

# Within a CNBlock (torchvision): block.2 is the LayerNorm whose channels-last output feeds
# the two linears block.3 and block.5; its output is the per-image gate input of adapters.
CNBLOCK_GATE_INPUT = "block.2"
CNBLOCK_LINEARS = ("block.3", "block.5")


def _basic_stage(cin: int, cout: int, depth: int, stride: int) -> nn.Sequential:
    """``depth`` ResNet basic blocks, the first changing width and stride."""
    downsample = None
    if stride != 1 or cin != cout:
        downsample = nn.Sequential(
            nn.Conv2d(cin, cout, 1, stride=stride, bias=False), nn.BatchNorm2d(cout)
        )
    blocks = [BasicBlock(cin, cout, stride=stride, downsample=downsample)]
    blocks += [BasicBlock(cout, cout) for _ in range(depth - 1)]
    return nn.Sequential(*blocks)


class ConvImageEncoder(nn.Module):
    """Residual CNN + ConvNeXt context blocks + SAM neck; embedding and fine features.

    Args:
        img_size: Side of the square network input.
        widths: Channels at strides 4, 8 and 16 (the stem has ``widths[0]``).
        depths: Blocks at strides 4, 8 and 16.
        out_chans: Channels of the embedding (the decoder's ``transformer_dim``).
        fine_chans: Channels of the stride-4 fine features (the decoder's upscaled width).
        layer_scale: Initial residual scale of the ConvNeXt blocks.
        drop_path: Stochastic depth of the last ConvNeXt block (linear ramp from 0).
    """

    def __init__(
        self,
        img_size: int,
        widths: tuple[int, int, int],
        depths: tuple[int, int, int],
        out_chans: int,
        fine_chans: int,
        layer_scale: float = 0.1,
        drop_path: float = 0.05,
    ) -> None:
        super().__init__()
        if len(widths) != 3 or len(depths) != 3:
            raise ValueError(f"conv encoder needs 3 widths and 3 depths, got {widths} / {depths}")
        w4, w8, w16 = widths
        self.img_size = img_size
        self.stem = nn.Sequential(
            nn.Conv2d(3, w4, 3, stride=2, padding=1, bias=False),
            nn.BatchNorm2d(w4),
            nn.ReLU(inplace=True),
        )
        self.stage4 = _basic_stage(w4, w4, depths[0], 2)
        self.stage8 = _basic_stage(w4, w8, depths[1], 2)
        self.down16 = nn.Sequential(LayerNorm2d(w8), nn.Conv2d(w8, w16, 2, stride=2))
        rates = [drop_path * i / max(1, depths[2] - 1) for i in range(depths[2])]
        self.blocks = nn.ModuleList(CNBlock(w16, layer_scale, rate) for rate in rates)
        self.neck = nn.Sequential(
            nn.Conv2d(w16, out_chans, 1, bias=False),
            LayerNorm2d(out_chans),
            nn.Conv2d(out_chans, out_chans, 3, padding=1, bias=False),
            LayerNorm2d(out_chans),
        )
        hidden = 2 * fine_chans
        self.fine4 = nn.Conv2d(w4, hidden, 1)
        self.fine8 = nn.Conv2d(w8, hidden, 1)
        self.fine16 = nn.Conv2d(w16, hidden, 1)
        self.fine_out = nn.Sequential(
            nn.BatchNorm2d(hidden),
            nn.GELU(),
            nn.Conv2d(hidden, fine_chans, 3, padding=1),
        )

    def adapter_blocks(self) -> list[tuple[str, nn.Module, str]]:
        """``(name, block, gate-input module)`` of every block adapters may target."""
        return [(f"blocks.{i}", block, CNBLOCK_GATE_INPUT) for i, block in enumerate(self.blocks)]

    def forward_features(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Embedding and fine features.

        Args:
            x: Normalised, padded input ``(B, 3, S, S)``.

        Returns:
            ``(B, out_chans, S/16, S/16)`` and ``(B, fine_chans, S/4, S/4)``.
        """
        return self.tail(self.trunk(x, 0), 0)

    def trunk(self, x: torch.Tensor, blocks: int) -> tuple[torch.Tensor, ...]:
        """Features up to (not including) ConvNeXt block ``blocks``: ``(f4, f8, f16)``.

        Multi-task adapters on the last blocks only need the trunk once per frame; the tail
        (:meth:`tail`) then runs once per task.
        """
        f4 = self.stage4(self.stem(x))
        f8 = self.stage8(f4)
        f16 = self.down16(f8)
        for block in self.blocks[:blocks]:
            f16 = block(f16)
        return f4, f8, f16

    def tail(self, features: tuple[torch.Tensor, ...], start: int) -> tuple[torch.Tensor, ...]:
        """Blocks from ``start`` on, the neck and fine features of :meth:`trunk`'s output."""
        f4, f8, f16 = features
        for block in self.blocks[start:]:
            f16 = block(f16)
        size = f4.shape[-2:]
        fused = (
            self.fine4(f4)
            + F.interpolate(self.fine8(f8), size=size, mode="bilinear", align_corners=False)
            + F.interpolate(self.fine16(f16), size=size, mode="bilinear", align_corners=False)
        )
        return self.neck(f16), self.fine_out(fused)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, 3, S, S) -> (B, out_chans, S/16, S/16)``: what ``Sam`` asks of its encoder."""
        return self.forward_features(x)[0]
