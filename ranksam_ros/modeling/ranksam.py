"""RankSam: segment-anything's ``Sam`` plus adapters and (optionally) a prompt predictor.

Encoding is SAM's image encoder (with whatever adapters were injected into it), decoding is
SAM's prompt encoder and mask decoder; with ``arch.detail_head`` the masks are then corrected
from pixel detail by :class:`DetailHead`, the only numerics of the wrapper's own.
"""

from __future__ import annotations

from contextlib import contextmanager

import torch
from segment_anything.modeling import Sam
from torch import nn

from ranksam_ros.adapters.inject import active_ranks
from ranksam_ros.adapters.prompt_adapter import (
    GUIDE_CHANNELS,
    PromptAdapterBlock,
    guide_input,
    prompt_adapter_block,
)
from ranksam_ros.adapters.registry import AdapterConfig
from ranksam_ros.config import SamArchConfig
from ranksam_ros.graph.prompts import select_masks
from ranksam_ros.modeling.detail_head import DetailHead, build_detail_head, decoder_internals
from ranksam_ros.modeling.semantic_head import SemanticHead

# Model-card key of the semantic head's per-class logit offsets (a prior correction).
SEMANTIC_OFFSETS = "semantic_logit_offsets"


@contextmanager
def fine_fusion(decoder: nn.Module, fine: torch.Tensor):
    """Add stride-4 encoder features to the decoder's upscaled embedding inside the block.

    SAM's masks are dot products of mask tokens with ``output_upscaling``'s result
    ``(N, C', m, m)``; adding the image's fine features ``(1, C', m, m)`` there lets every mask
    see pixel detail the 16-pixel tokens lost. A forward hook, so SAM's code is untouched.
    """
    handle = decoder.output_upscaling.register_forward_hook(lambda _m, _i, out: out + fine)
    try:
        yield
    finally:
        handle.remove()


class RankSam(nn.Module):
    """SAM with optional encoder adapters.

    Args:
        sam: A segment-anything ``Sam``.
        arch: Its architecture numbers (input size, normalisation, grid sizes).
        model_id: Human-readable identity, e.g. ``camvid-tiny+gated``.
    """

    def __init__(self, sam: Sam, arch: SamArchConfig, model_id: str) -> None:
        super().__init__()
        self.sam = sam
        self.arch = arch
        self.model_id = model_id
        self.adapter_cfg: AdapterConfig | None = None
        self.prompt_predictor: nn.Module | None = None
        # Settings calibrated for this model (its model card's "calibration", e.g.
        # box_mask_threshold, semantic_logit_offsets); empty for a bare checkpoint.
        self.calibration: dict[str, float | tuple[float, ...]] = {}
        self.detail_head: DetailHead | None = (
            build_detail_head(sam.mask_decoder) if arch.detail_head else None
        )
        self.semantic_head: SemanticHead | None = None
        if arch.semantic_classes:
            self.semantic_head = SemanticHead(
                arch.out_chans, arch.out_chans // 8, len(arch.semantic_classes)
            )

    @property
    def fine_features(self) -> bool:
        """True when the encoder hands stride-4 features to the mask decoder."""
        return self.arch.encoder == "conv"

    def heads(self) -> dict[str, nn.Module]:
        """Modules beside SAM that the model file stores, by name (their key prefix)."""
        found = {"detail_head": self.detail_head, "semantic_head": self.semantic_head}
        return {name: module for name, module in found.items() if module is not None}

    @property
    def image_encoder(self) -> nn.Module:
        return self.sam.image_encoder

    def encode(self, images: torch.Tensor) -> torch.Tensor:
        """Image embeddings.

        Args:
            images: Normalised, padded input ``(B, 3, S, S)``.

        Returns:
            ``(B, C, S/p, S/p)``; adapter gates are computed per image inside the encoder.
        """
        return self.sam.image_encoder(images)

    def encode_with_detail(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Embedding and the per-image detail the decoder needs (None when it needs none).

        Args:
            images: Normalised, padded input ``(B, 3, S, S)``.

        Returns:
            ``(B, C, g, g)`` and ``(B, C', m, m)``: the conv encoder's fine features, or the
            detail head's, or None.
        """
        embedding, detail = self._encode(images)
        if self.prompt_adapter is not None:  # its guiding branch reads image and edges
            guide = guide_input(images, self.arch.mask_size)
            detail = guide if detail is None else torch.cat([detail, guide], dim=1)
        return embedding, detail

    def _encode(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        if self.fine_features:
            return self.sam.image_encoder.forward_features(images)
        embedding = self.sam.image_encoder(images)
        if self.detail_head is None:
            return embedding, None
        return embedding, self.detail_head.image_features(images, self.arch.mask_size)

    @property
    def prompt_adapter(self) -> PromptAdapterBlock | None:
        """The PA-SAM adapter block inside the mask decoder, if one was injected."""
        return prompt_adapter_block(self.sam.mask_decoder)

    def _split_detail(
        self, detail: torch.Tensor | None
    ) -> tuple[torch.Tensor | None, torch.Tensor | None]:
        """Per-image detail -> (fine or detail-head features, prompt-adapter guide input)."""
        if self.prompt_adapter is None or detail is None:
            return detail, None
        own = detail[:, :-GUIDE_CHANNELS] if detail.shape[1] > GUIDE_CHANNELS else None
        return own, detail[:, -GUIDE_CHANNELS:]

    def semantic_logits(self, embedding: torch.Tensor, detail: torch.Tensor) -> torch.Tensor:
        """Dense class logits ``(B, K, m, m)`` of the semantic head.

        Raises:
            ValueError: the model has no semantic head.
        """
        if self.semantic_head is None:
            raise ValueError(f"model {self.model_id} has no semantic head")
        return self.semantic_head(embedding, self._split_detail(detail)[0])

    def semantic_probs(self, embedding: torch.Tensor, detail: torch.Tensor) -> torch.Tensor:
        """Class probabilities ``(B, K, m, m)`` of the semantic head, as the model serves them.

        The head trains with class-weighted cross-entropy, which inflates the logit of class
        ``k`` by about ``log w_k``, so rare classes are over-predicted. The model card's
        ``calibration.semantic_logit_offsets`` (``-tau * log w``, ``tau`` chosen on a held-out
        sequence: scripts/calibrate_semantic_prior.py) takes that back. Training reads
        :meth:`semantic_logits`, which never adds it; exports trace it in as a constant.
        """
        logits = self.semantic_logits(embedding, detail)
        offsets = self.calibration.get(SEMANTIC_OFFSETS)
        if offsets is not None:
            logits = logits + logits.new_tensor(offsets).view(1, -1, 1, 1)
        return torch.softmax(logits, dim=1)

    @property
    def class_names(self) -> tuple[str, ...]:
        """Classes the model names: its semantic head's, else its prompt predictor's."""
        if self.arch.semantic_classes:
            return tuple(self.arch.semantic_classes)
        if self.prompt_predictor is not None:
            return tuple(self.prompt_predictor.class_names)
        return ()

    def decode(
        self,
        embedding: torch.Tensor,
        points: torch.Tensor | None = None,
        labels: torch.Tensor | None = None,
        boxes: torch.Tensor | None = None,
        multimask: bool = False,
        detail: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Mask logits for N prompts on one image.

        Args:
            embedding: One image's embedding ``(1, C, h, w)``.
            points: Point coordinates in input pixels ``(N, P, 2)`` (x, y).
            labels: Point labels ``(N, P)``: 1 foreground, 0 background, -1 padding.
            boxes: Boxes in input pixels ``(N, 4)`` as x0, y0, x1, y1.
            multimask: Return SAM's three ambiguity masks instead of the single one.
            detail: That image's :meth:`detail` features; required with the detail head.

        Returns:
            Logits ``(N, 1|3, m, m)`` (``m = arch.mask_size``) and predicted IoU ``(N, 1|3)``.
        """
        point_arg = (points, labels) if points is not None else None
        sparse, dense = self.sam.prompt_encoder(points=point_arg, boxes=boxes, masks=None)
        masks, iou = self.decode_all_tokens(embedding, sparse, dense, detail)
        return select_masks(masks, iou, multimask)

    def decode_all_tokens(
        self,
        embedding: torch.Tensor,
        sparse: torch.Tensor,
        dense: torch.Tensor,
        detail: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """SAM's mask decoder on embedded prompts: all four mask tokens (detail-corrected).

        Args:
            embedding: ``(1, C, h, w)``.
            sparse: Sparse prompt embeddings ``(N, T, C)``.
            dense: Dense prompt embeddings ``(N|1, C, h, w)``.
            detail: ``(1, C', m, m)`` features of the detail head (None without it).

        Returns:
            Logits ``(N, 4, m, m)`` and predicted IoU ``(N, 4)``.
        """
        decoder = self.sam.mask_decoder
        detail, guide = self._split_detail(detail)
        adapter = self.prompt_adapter
        if adapter is not None:
            if guide is None:
                raise ValueError(f"model {self.model_id} has a prompt adapter: pass detail=")
            adapter.guide = decoder.pa_guide(guide).flatten(2).transpose(1, 2)
            if adapter.mine:  # placeholder prompts the mined points take over
                filler = self.sam.prompt_encoder.not_a_point_embed.weight
                sparse = torch.cat(
                    [sparse, filler.expand(sparse.shape[0], 2 * adapter.points, -1)], 1
                )
        args = {
            "image_embeddings": embedding,
            "image_pe": self.sam.prompt_encoder.get_dense_pe(),
            "sparse_prompt_embeddings": sparse,
            "dense_prompt_embeddings": dense,
        }
        if self.fine_features:
            if detail is None:
                raise ValueError(f"model {self.model_id} adds fine features: pass detail=")
            with fine_fusion(decoder, detail):
                return decoder.predict_masks(**args)
        if self.detail_head is None:
            return decoder.predict_masks(**args)
        if detail is None:
            raise ValueError(f"model {self.model_id} has a detail head: pass detail=")
        with decoder_internals(decoder) as seen:
            masks, iou = decoder.predict_masks(**args)
        return self.detail_head(detail, seen["upscaled"], seen["mask_tokens"], masks), iou

    def active_ranks(self) -> dict[str, torch.Tensor]:
        """Per adapted layer, the active rank of each image of the last encoding, ``(B,)``."""
        return active_ranks(self.sam.image_encoder)

    def mean_active_rank(self) -> torch.Tensor | None:
        """Mean over gated layers of the active rank, per image ``(B,)``; None without gates."""
        ranks = self.active_ranks()
        if not ranks:
            return None
        return torch.stack(list(ranks.values())).float().mean(0)
