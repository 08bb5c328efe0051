"""Detail head: SAM's mask logits corrected with pixel detail the 16-pixel tokens cannot carry.

SAM's decoder draws masks at four times the token grid, but everything it knows comes from
16-pixel tokens, so boundaries inside a token are guessed. On CamVid val a perfect mask at our
96x96 mask resolution would score 0.96 on large segments, yet about half of the box-prompt
error pixels there lie within 3 source pixels of the true boundary (docs/design.md): the
resolution is there, the information is not. This head adds it:

* ``detail``: a small convolutional stem on the network input (once per image) gives
  features on the mask grid (stride 4);
* per prompt, SAM's upscaled mask embedding is added to them and passed through a GELU;
  each mask token, through a small MLP, gives the weights of a dot product over the result
  (the same hypernetwork form as SAM's own masks, so the per-prompt cost is of the order of
  SAM's own mask product);
* the result is a residual on SAM's logits. The last MLP layer starts at zero, so a new head
  reproduces SAM's masks exactly until it is trained.

SAM's modules are not modified: the decoder's intermediate tensors (mask tokens after the
two-way transformer, upscaled embedding) are read with forward hooks during its own call.
"""

from __future__ import annotations

from contextlib import contextmanager

import torch
import torch.nn.functional as F
from segment_anything.modeling import MaskDecoder
from torch import nn

STEM_KERNEL = 3
STEM_WIDTH = 2  # stem channels per output channel: it runs once per frame, so it can be wider


class DetailHead(nn.Module):
    """Residual correction of SAM's mask logits from pixel detail.

    Args:
        token_dim: Width of the decoder's tokens (``transformer_dim``).
        channels: Channels of the upscaled mask embedding (``transformer_dim // 8``).
    """

    def __init__(self, token_dim: int, channels: int) -> None:
        super().__init__()
        pad, hidden = STEM_KERNEL // 2, STEM_WIDTH * channels
        self.stem = nn.Sequential(
            nn.Conv2d(3, hidden, STEM_KERNEL, stride=2, padding=pad),
            nn.GELU(),
            nn.Conv2d(hidden, hidden, STEM_KERNEL, stride=2, padding=pad),
            nn.GELU(),
            nn.Conv2d(hidden, channels, STEM_KERNEL, padding=pad),
        )
        self.token_mlp = nn.Sequential(
            nn.Linear(token_dim, token_dim), nn.GELU(), nn.Linear(token_dim, channels)
        )
        nn.init.zeros_(self.token_mlp[-1].weight)
        nn.init.zeros_(self.token_mlp[-1].bias)

    def image_features(self, images: torch.Tensor, mask_size: int) -> torch.Tensor:
        """Detail features of normalised padded inputs ``(B, 3, S, S)`` -> ``(B, C, m, m)``."""
        features = self.stem(images)
        if features.shape[-1] != mask_size:  # only for patch sizes other than 16
            features = F.interpolate(
                features, (mask_size, mask_size), mode="bilinear", align_corners=False
            )
        return features

    def forward(
        self,
        detail: torch.Tensor,
        upscaled: torch.Tensor,
        mask_tokens: torch.Tensor,
        coarse: torch.Tensor,
    ) -> torch.Tensor:
        """Corrected logits.

        Args:
            detail: One image's detail features ``(1, C, m, m)``.
            upscaled: SAM's upscaled mask embedding per prompt ``(N, C, m, m)``.
            mask_tokens: Mask tokens after the two-way transformer ``(N, K, D)``.
            coarse: SAM's logits for those tokens ``(N, K, m, m)``.

        Returns:
            ``(N, K, m, m)``.
        """
        fused = F.gelu(upscaled + detail).flatten(2)  # (N, C, m^2)
        weights = self.token_mlp(mask_tokens)  # (N, K, C)
        return coarse + (weights @ fused).view_as(coarse)


@contextmanager
def decoder_internals(decoder: MaskDecoder):
    """Record the mask tokens and the upscaled embedding of the decoder calls inside the block.

    Yields:
        A dict that holds ``mask_tokens (N, 4, D)`` and ``upscaled (N, C, m, m)`` after a call.
    """
    seen: dict[str, torch.Tensor] = {}
    count = decoder.num_mask_tokens

    def tokens_hook(_module, _inputs, output):
        seen["mask_tokens"] = output[0][:, 1 : 1 + count, :]

    def upscale_hook(_module, _inputs, output):
        seen["upscaled"] = output

    handles = [
        decoder.transformer.register_forward_hook(tokens_hook),
        decoder.output_upscaling.register_forward_hook(upscale_hook),
    ]
    try:
        yield seen
    finally:
        for handle in handles:
            handle.remove()


def build_detail_head(decoder: MaskDecoder) -> DetailHead:
    """A head sized for ``decoder`` (segment-anything's ``MaskDecoder``)."""
    dim = decoder.transformer_dim
    return DetailHead(dim, dim // 8)
