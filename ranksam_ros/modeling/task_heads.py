"""Prompt-free dense task heads on SAM's mask decoder (mSAM), for multi-task adapters.

mSAM replaces the prompt encoder by learned "no mask" embeddings and gives each task its own
copy of SAM's mask decoder. Where mSAM runs a task's decoder once per output channel (each
with its own no-mask embedding), a head here gives the decoder copy one mask token per
channel, so a task of C channels costs one decoder pass instead of C: the two-way
transformer and the upscaling run once, only the hypernetwork products are per channel. The
copy starts from the foundation's decoder (every token from SAM's first mask token), and the
conv encoder's fine features reach its masks like they reach SAM's.
"""

from __future__ import annotations

import copy

import torch
from segment_anything.modeling import MaskDecoder
from torch import nn

from ranksam_ros.modeling.ranksam import RankSam, fine_fusion


def _decoder_copy(decoder: MaskDecoder, channels: int) -> MaskDecoder:
    """SAM's decoder with ``channels`` mask tokens, initialised from ``decoder``."""
    head = MaskDecoder(
        transformer_dim=decoder.transformer_dim,
        transformer=copy.deepcopy(decoder.transformer),
        num_multimask_outputs=channels - 1,
        iou_head_hidden_dim=decoder.iou_prediction_head.layers[0].out_features,
    )
    head.output_upscaling.load_state_dict(decoder.output_upscaling.state_dict())
    with torch.no_grad():
        head.iou_token.weight.copy_(decoder.iou_token.weight)
        first = decoder.mask_tokens.weight[0]
        head.mask_tokens.weight.copy_(first + 0.02 * torch.randn(channels, first.shape[0]))
        for mlp in head.output_hypernetworks_mlps:
            mlp.load_state_dict(decoder.output_hypernetworks_mlps[0].state_dict())
    # SAM's IoU head is not used by a dense task: freeze it so it holds no trainable weights.
    for param in head.iou_prediction_head.parameters():
        param.requires_grad_(False)
    return head


class TaskHead(nn.Module):
    """One dense task: ``channels`` logit maps on the mask grid, no prompt needed.

    Args:
        model: The foundation whose decoder and no-mask embedding the head starts from.
        channels: Output channels of the task.
    """

    def __init__(self, model: RankSam, channels: int) -> None:
        super().__init__()
        self.channels = channels
        self.decoder = _decoder_copy(model.sam.mask_decoder, channels)
        self.no_mask = nn.Parameter(model.sam.prompt_encoder.no_mask_embed.weight.detach().clone())

    def forward(
        self, embedding: torch.Tensor, image_pe: torch.Tensor, detail: torch.Tensor | None
    ) -> torch.Tensor:
        """Logits ``(B, C, m, m)`` of images with embeddings ``(B, D, g, g)``.

        Args:
            embedding: Task-adapted embeddings ``(B, D, g, g)``.
            image_pe: SAM's dense positional encoding ``(1, D, g, g)``.
            detail: Fine features ``(B, D/8, m, m)`` of the conv encoder (None without).
        """
        dense = self.no_mask.view(1, -1, 1, 1).expand(1, -1, *embedding.shape[-2:])
        sparse = embedding.new_zeros(1, 0, embedding.shape[1])
        outputs = []
        for index in range(len(embedding)):  # SAM's decoder takes one image per call
            args = (embedding[index : index + 1], image_pe, sparse, dense)
            if detail is None:
                outputs.append(self.decoder.predict_masks(*args)[0])
                continue
            with fine_fusion(self.decoder, detail[index : index + 1]):
                outputs.append(self.decoder.predict_masks(*args)[0])
        return torch.cat(outputs)
