"""ViT backbones, position embeddings (sin-cos, RoPE2D), the CroCo encoder-decoder, patch / masking helpers
and checkpoint loading."""

from .checkpoint import (
    LoadResult,
    convert_croco_decoder,
    convert_state_dict,
    load_checkpoint,
    read_checkpoint,
    save_checkpoint,
    unwrap_state_dict,
)
from .croco import CROCO_PRESETS, CroCoNet
from .decoder import CrossBlock
from .hrnet import HRNetFeatures
from .mit import MIT_SIZES, MiT, convert_segformer_state_dict, load_segformer_checkpoint
from .patches import (
    MASK_COUNT_RULES,
    MaskOutput,
    mask_from_shuffle,
    masked_mse,
    norm_pix_target,
    patchify,
    random_masking,
    unpatchify,
)
from .pos_embed import get_1d_sincos_pos_embed, get_2d_sincos_pos_embed, resize_pos_embed
from .rope import RoPE2D, RoPEAttention
from .swin import SWIN_SIZES, Swin, average_over_windows, window_attention
from .vit import VIT_SIZES, RoPEBlock, ViT, default_out_indices, init_mae_weights, run_block

__all__ = [
    "MASK_COUNT_RULES",
    "unwrap_state_dict",
    "ViT",
    "VIT_SIZES",
    "RoPEBlock",
    "default_out_indices",
    "init_mae_weights",
    "RoPE2D",
    "RoPEAttention",
    "CrossBlock",
    "CroCoNet",
    "CROCO_PRESETS",
    "MaskOutput",
    "mask_from_shuffle",
    "masked_mse",
    "norm_pix_target",
    "patchify",
    "random_masking",
    "unpatchify",
    "run_block",
    "get_1d_sincos_pos_embed",
    "get_2d_sincos_pos_embed",
    "resize_pos_embed",
    "LoadResult",
    "load_checkpoint",
    "read_checkpoint",
    "save_checkpoint",
    "convert_state_dict",
    "convert_croco_decoder",
    "MiT",
    "MIT_SIZES",
    "convert_segformer_state_dict",
    "load_segformer_checkpoint",
    "Swin",
    "SWIN_SIZES",
    "HRNetFeatures",
    "window_attention",
    "average_over_windows",
]
