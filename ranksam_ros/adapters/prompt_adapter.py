"""PA-SAM prompt adapter: a trainable adapter inside SAM's frozen mask decoder.

Dense side: a guiding branch turns the image and its edges (a fixed Sobel convolution, so it
exports) into a map ``G`` on the token grid that re-weights the decoder's image tokens inside
one two-way block (``Kg = G * K``; the block attends to ``K + Kg``) plus an extra attention
from the tokens to ``Kg``. Sparse side: from the first mask token the adapter makes an
*uncertainty* token and a *refined* token; the refined token replaces the mask token's update,
and the uncertainty map ``U`` drives hard point mining: the cells where the refined and the
coarse maps disagree most (``S = U * (sigmoid(R) - sigmoid(M))``) become ``k`` positive and
``k`` negative point tokens for the rest of the decoder (Gumbel-perturbed top-k while
training, plain top-k at inference: static shapes, top-k + gather, exportable).

The mined tokens fill ``2k`` placeholder prompts (SAM's "not a point" embedding) that
:class:`~ranksam_ros.modeling.ranksam.RankSam` appends to every prompt, so the token count is
fixed from the start and SAM's own transformer loop is unchanged. The hosting block is
wrapped, not copied: its own submodules run in their own order. New layers start neutral
(zero last layers), so until the mined points are switched on the adapter returns SAM's masks.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from segment_anything.modeling.common import LayerNorm2d
from segment_anything.modeling.mask_decoder import MLP
from segment_anything.modeling.transformer import Attention
from torch import nn

from ranksam_ros.adapters.base import AdapterConfigBase, check

GUIDE_CHANNELS = 4  # RGB + edge magnitude, at the mask grid


@dataclass(frozen=True)
class PromptAdapterConfig(AdapterConfigBase):
    """Where the adapter sits and how many points it mines.

    ``block``: index of the two-way block that hosts it; ``points``: ``k`` mined positive
    and ``k`` negative points; ``guide_width``: width of the guiding branch's first layer;
    ``tau``: Gumbel temperature of the mining while training; ``mine``: mine points (off:
    the placeholders stay "not a point", e.g. early in training).
    """

    kind: str = "prompt_adapter"
    target_modules: tuple[str, ...] = ("mask_decoder",)
    block: int = 1
    points: int = 2
    guide_width: int = 32
    tau: float = 1.0
    mine: bool = True

    def __post_init__(self) -> None:
        super().__post_init__()
        check(self.kind == "prompt_adapter", f"kind must be 'prompt_adapter', got {self.kind!r}")
        check(self.block >= 0, f"adapter.block must be >= 0, got {self.block}")
        check(self.points >= 1, f"adapter.points must be >= 1, got {self.points}")
        check(self.tau > 0, f"adapter.tau must be > 0, got {self.tau}")


def guide_input(images: torch.Tensor, size: int) -> torch.Tensor:
    """Image and Sobel edge magnitude on the mask grid: ``(B, 3, S, S) -> (B, 4, m, m)``."""
    small = F.adaptive_avg_pool2d(images, size)
    grey = small.mean(dim=1, keepdim=True)
    sobel = torch.tensor([[-1.0, 0.0, 1.0], [-2.0, 0.0, 2.0], [-1.0, 0.0, 1.0]])
    kernels = torch.stack([sobel, sobel.t()])[:, None].to(images)
    grad = F.conv2d(F.pad(grey, (1, 1, 1, 1), mode="replicate"), kernels)
    edge = torch.sqrt((grad**2).sum(dim=1, keepdim=True) + 1e-6)
    return torch.cat([small, edge], dim=1)


class GuideBranch(nn.Module):
    """``(1, 4, m, m)`` image + edge -> guiding map ``G (1, D, g, g)`` (``m = 4 g``)."""

    def __init__(self, dim: int, width: int) -> None:
        super().__init__()
        self.pa_net = nn.Sequential(
            nn.Conv2d(GUIDE_CHANNELS, width, 2, stride=2),
            LayerNorm2d(width),
            nn.GELU(),
            nn.Conv2d(width, dim, 2, stride=2),
            LayerNorm2d(dim),
            nn.GELU(),
            nn.Conv2d(dim, dim, 1),
        )
        nn.init.zeros_(self.pa_net[-1].weight)  # G = 0: no re-weighting at init
        nn.init.zeros_(self.pa_net[-1].bias)

    def forward(self, guide: torch.Tensor) -> torch.Tensor:
        return self.pa_net(guide)


class PromptAdapterBlock(nn.Module):
    """A two-way attention block of SAM's decoder with the PA-SAM adapter inside.

    Args:
        block: SAM's ``TwoWayAttentionBlock`` (kept frozen and run as is).
        point_embeddings: SAM's positive / negative point embeddings (prompt encoder).
        cfg: Points to mine, temperature.
    """

    prefix = "pa_"  # every adapter parameter (and the guiding branch pa_guide) carries it

    def __init__(
        self, block: nn.Module, point_embeddings: nn.ModuleList, cfg: PromptAdapterConfig
    ) -> None:
        super().__init__()
        dim = block.norm1.normalized_shape[0]
        heads = block.cross_attn_token_to_image.num_heads
        self.block = block
        self.points, self.tau, self.mine = cfg.points, cfg.tau, cfg.mine
        # SAM's embeddings, read not trained: a plain list keeps them out of this module.
        self._point_embeddings = [point_embeddings[0], point_embeddings[1]]
        self.pa_attn = Attention(dim, heads, downsample_rate=2)
        nn.init.zeros_(self.pa_attn.out_proj.weight)
        nn.init.zeros_(self.pa_attn.out_proj.bias)
        self.pa_uncertain = nn.Parameter(torch.zeros(1, dim))
        self.pa_refined = nn.Parameter(torch.zeros(1, dim))
        self.pa_mlp_u = MLP(2 * dim, dim // 2, dim, 3)
        self.pa_mlp_r = MLP(2 * dim, dim // 2, dim, 3)
        nn.init.zeros_(self.pa_mlp_r.layers[-1].weight)  # refined token 0: SAM's update
        nn.init.zeros_(self.pa_mlp_r.layers[-1].bias)
        self.guide: torch.Tensor | None = None  # (1, g*g, D) of the image being decoded
        self.maps: dict[str, torch.Tensor] = {}  # U, R, M logits (N, g*g) of the last call

    def forward(
        self,
        queries: torch.Tensor,
        keys: torch.Tensor,
        query_pe: torch.Tensor,
        key_pe: torch.Tensor,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """SAM's block (self attention, token-to-image, MLP, image-to-token) with the adapter."""
        if self.guide is None:
            raise RuntimeError("PromptAdapterBlock has no guide: decode through RankSam")
        block = self.block
        if block.skip_first_layer_pe:
            queries = block.self_attn(q=queries, k=queries, v=queries)
        else:
            q = queries + query_pe
            queries = queries + block.self_attn(q=q, k=q, v=queries)
        queries = block.norm1(queries)
        guided = keys * self.guide  # Kg = G * K (dense prompt compensation)
        keys = keys + guided
        q = queries + query_pe
        attended = block.cross_attn_token_to_image(q=q, k=keys + key_pe, v=keys)
        extra = self.pa_attn(q=q, k=guided + key_pe, v=guided)
        mask_token = (queries + attended)[:, 1]  # SAM's first mask token after the attention
        refined = self._tokens(mask_token, guided)
        extra = torch.cat([extra[:, :1], refined[:, None], extra[:, 2:]], dim=1)
        queries = block.norm2(queries + attended + extra)
        if self.mine:
            queries = self._with_mined_points(queries, keys, key_pe)
        queries = block.norm3(queries + block.mlp(queries))
        q = queries + query_pe
        keys = block.norm4(keys + block.cross_attn_image_to_token(q=keys + key_pe, k=q, v=queries))
        return queries, keys

    def _tokens(self, mask_token: torch.Tensor, guided: torch.Tensor) -> torch.Tensor:
        """Refined token ``(N, D)``; records the uncertainty, refined and coarse maps."""
        # expand_as, not len(): a traced len() is a constant, and the exported decoder would
        # only take the prompt count it was traced with.
        uncertain = self.pa_mlp_u(
            torch.cat([self.pa_uncertain.expand_as(mask_token), mask_token], 1)
        )
        refined = self.pa_mlp_r(torch.cat([self.pa_refined.expand_as(mask_token), mask_token], 1))
        self.maps = {
            "uncertainty": torch.einsum("nd,nkd->nk", uncertain, guided),
            "refined": torch.einsum("nd,nkd->nk", mask_token + refined, guided),
            "coarse": torch.einsum("nd,nkd->nk", mask_token, guided),
        }
        return refined

    def _with_mined_points(
        self, queries: torch.Tensor, keys: torch.Tensor, key_pe: torch.Tensor
    ) -> torch.Tensor:
        """The last ``2k`` (placeholder) tokens become the mined positive and negative points."""
        maps = self.maps
        score = torch.sigmoid(maps["uncertainty"]) * (
            torch.sigmoid(maps["refined"]) - torch.sigmoid(maps["coarse"])
        )
        tokens = []
        for sign, label in ((1.0, 1), (-1.0, 0)):
            picks = self._top_k(sign * score.detach())  # (N, k)
            index = picks[..., None].expand(-1, -1, keys.shape[-1])
            content = torch.gather(keys, 1, index) + torch.gather(key_pe, 1, index)
            tokens.append(content + self._point_embeddings[label].weight)
        kept = queries[:, : queries.shape[1] - 2 * self.points]
        return torch.cat([kept, *tokens], dim=1)

    def _top_k(self, score: torch.Tensor) -> torch.Tensor:
        if self.training:  # Gumbel-perturbed: explore cells near the top while training
            uniform = torch.rand_like(score).clamp_(1e-6, 1 - 1e-6)
            score = score - self.tau * torch.log(-torch.log(uniform))
        return score.topk(self.points, dim=1).indices


def inject_prompt_adapter(sam: nn.Module, cfg: PromptAdapterConfig) -> list[str]:
    """Wrap decoder block ``cfg.block`` and add the guiding branch (``pa_guide``) to SAM.

    Raises:
        ValueError: the decoder has no such block or already holds a prompt adapter.
    """
    layers = sam.mask_decoder.transformer.layers
    if not 0 <= cfg.block < len(layers):
        raise ValueError(f"adapter.block={cfg.block} but the decoder has {len(layers)} blocks")
    if isinstance(layers[cfg.block], PromptAdapterBlock) or hasattr(sam.mask_decoder, "pa_guide"):
        raise ValueError("the decoder already has a prompt adapter")
    rows, cols = sam.prompt_encoder.image_embedding_size
    if cfg.points > rows * cols:
        raise ValueError(
            f"adapter.points={cfg.points} is more than the {rows}x{cols} cells it mines from"
        )
    layers[cfg.block] = PromptAdapterBlock(
        layers[cfg.block], sam.prompt_encoder.point_embeddings, cfg
    )
    dim = sam.mask_decoder.transformer_dim
    sam.mask_decoder.pa_guide = GuideBranch(dim, cfg.guide_width)
    return [f"mask_decoder.transformer.layers.{cfg.block}", "mask_decoder.pa_guide"]


def prompt_adapter_block(decoder: nn.Module) -> PromptAdapterBlock | None:
    """The decoder's adapter block, if it has one."""
    for layer in decoder.transformer.layers:
        if isinstance(layer, PromptAdapterBlock):
            return layer
    return None
