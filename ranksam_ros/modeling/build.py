"""Architecture registry: official SAM sizes and small CPU configs, built from segment-anything.

Numbers live only here. ``vit_b``/``vit_l``/``vit_h`` reproduce ``segment_anything.build_sam``
exactly (same classes, same arguments) so official checkpoint files load unchanged; the small
presets use the same classes with CPU-sized numbers.
"""

from __future__ import annotations

import dataclasses
from functools import partial

import torch
from segment_anything.modeling import (
    ImageEncoderViT,
    MaskDecoder,
    PromptEncoder,
    Sam,
    TwoWayTransformer,
)

from ranksam_ros.config import CAMVID_CLASSES, SamArchConfig
from ranksam_ros.modeling.conv_encoder import ConvImageEncoder


def _official(embed_dim: int, depth: int, heads: int, global_idx: tuple[int, ...]) -> SamArchConfig:
    return SamArchConfig(
        img_size=1024,
        patch_size=16,
        embed_dim=embed_dim,
        depth=depth,
        num_heads=heads,
        mlp_ratio=4.0,
        out_chans=256,
        window_size=14,
        global_attn_indexes=global_idx,
        use_rel_pos=True,
        decoder_depth=2,
        decoder_mlp_dim=2048,
        decoder_heads=8,
        iou_head_hidden_dim=256,
        mask_in_chans=16,
    )


ARCH_PRESETS: dict[str, SamArchConfig] = {
    "vit_b": _official(768, 12, 12, (2, 5, 8, 11)),
    "vit_l": _official(1024, 24, 16, (5, 11, 17, 23)),
    "vit_h": _official(1280, 32, 16, (7, 15, 23, 31)),
    # The calibration config of the project brief: 256 px, 64x64 masks.
    "tiny": SamArchConfig(),
    # The shipped default's encoder: 384 px input, 24x24 tokens, 96x96 masks (5 source px
    # per mask cell on 480x360 frames instead of 7.5), about twice the cost of `tiny`.
    "tiny384": SamArchConfig(img_size=384, patch_size=16, window_size=6),
    # Smallest valid model, for unit tests and training smoke runs only.
    "micro": SamArchConfig(
        img_size=64,
        patch_size=8,
        embed_dim=32,
        depth=2,
        num_heads=2,
        out_chans=32,
        window_size=4,
        global_attn_indexes=(1,),
        decoder_mlp_dim=64,
        decoder_heads=2,
        iou_head_hidden_dim=32,
        mask_in_chans=4,
    ),
    # tiny384 plus the detail head: SAM's masks corrected with pixel detail.
    "tiny384-detail": SamArchConfig(img_size=384, patch_size=16, window_size=6, detail_head=True),
    # 512 px, 32x32 tokens, 128x128 masks: finer still, about 4x the cost of `tiny`.
    "tiny512": SamArchConfig(img_size=512, patch_size=16, window_size=8),
    # Foundation 2: the convolutional encoder (residual CNN + ConvNeXt context blocks) at
    # 384 px, stride-4 features for the mask path, and a dense CamVid semantic head.
    "conv384": SamArchConfig(
        encoder="conv", img_size=384, patch_size=16, semantic_classes=CAMVID_CLASSES
    ),
    # Smallest conv model, for unit tests and smoke runs only.
    "micro-conv": SamArchConfig(
        encoder="conv",
        img_size=64,
        patch_size=16,
        out_chans=32,
        conv_widths=(8, 16, 32),
        conv_depths=(1, 1, 2),
        decoder_mlp_dim=64,
        decoder_heads=2,
        iou_head_hidden_dim=32,
        mask_in_chans=4,
        semantic_classes=CAMVID_CLASSES,
    ),
}


def arch_preset(name: str) -> SamArchConfig:
    """Return the architecture preset ``name`` or raise ``ValueError`` listing the choices."""
    try:
        return ARCH_PRESETS[name]
    except KeyError:
        raise ValueError(
            f"unknown architecture {name!r}; choose one of {', '.join(ARCH_PRESETS)}"
        ) from None


def _image_encoder(arch: SamArchConfig) -> torch.nn.Module:
    """SAM's ViT (official numbers for vit_b/l/h) or the convolutional encoder."""
    if arch.encoder == "conv":
        return ConvImageEncoder(
            img_size=arch.img_size,
            widths=tuple(arch.conv_widths),
            depths=tuple(arch.conv_depths),
            out_chans=arch.out_chans,
            fine_chans=arch.out_chans // 8,
        )
    return ImageEncoderViT(
        img_size=arch.img_size,
        patch_size=arch.patch_size,
        embed_dim=arch.embed_dim,
        depth=arch.depth,
        num_heads=arch.num_heads,
        mlp_ratio=arch.mlp_ratio,
        out_chans=arch.out_chans,
        qkv_bias=True,
        norm_layer=partial(torch.nn.LayerNorm, eps=1e-6),
        use_rel_pos=arch.use_rel_pos,
        global_attn_indexes=tuple(arch.global_attn_indexes),
        window_size=arch.window_size,
    )


def build_sam(arch: SamArchConfig) -> Sam:
    """Instantiate segment-anything's ``Sam`` with randomly initialised weights.

    Args:
        arch: Architecture numbers.

    Returns:
        ``Sam`` whose encoder maps ``(B, 3, S, S)`` to ``(B, out_chans, S/p, S/p)`` and whose
        decoder returns ``(N, 1|3, 4S/p, 4S/p)`` mask logits.
    """
    grid = arch.embedding_size
    encoder = _image_encoder(arch)
    prompt_encoder = PromptEncoder(
        embed_dim=arch.out_chans,
        image_embedding_size=(grid, grid),
        input_image_size=(arch.img_size, arch.img_size),
        mask_in_chans=arch.mask_in_chans,
    )
    decoder = MaskDecoder(
        num_multimask_outputs=3,
        transformer=TwoWayTransformer(
            depth=arch.decoder_depth,
            embedding_dim=arch.out_chans,
            mlp_dim=arch.decoder_mlp_dim,
            num_heads=arch.decoder_heads,
        ),
        transformer_dim=arch.out_chans,
        iou_head_depth=3,
        iou_head_hidden_dim=arch.iou_head_hidden_dim,
    )
    return Sam(
        image_encoder=encoder,
        prompt_encoder=prompt_encoder,
        mask_decoder=decoder,
        pixel_mean=list(arch.pixel_mean),
        pixel_std=list(arch.pixel_std),
    )


def infer_official_arch(state_dict: dict[str, torch.Tensor]) -> str:
    """Name the official preset whose encoder width and depth match ``state_dict``."""
    key = "image_encoder.patch_embed.proj.weight"
    if key not in state_dict:
        raise ValueError(f"not a SAM state dict: key {key!r} missing")
    width = state_dict[key].shape[0]
    depth = 1 + max(
        int(k.split(".")[2]) for k in state_dict if k.startswith("image_encoder.blocks.")
    )
    for name in ("vit_b", "vit_l", "vit_h"):
        arch = ARCH_PRESETS[name]
        if arch.embed_dim == width and arch.depth == depth:
            return name
    raise ValueError(f"no official SAM has encoder width {width} and depth {depth}")


def arch_to_dict(arch: SamArchConfig) -> dict:
    """JSON-friendly dict of an architecture (stored inside checkpoints)."""
    data = dataclasses.asdict(arch)
    return {k: list(v) if isinstance(v, tuple) else v for k, v in data.items()}
