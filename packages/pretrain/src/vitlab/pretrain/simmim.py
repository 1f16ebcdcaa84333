"""SimMIM (Xie et al., "SimMIM: A Simple Framework for Masked Image Modeling", CVPR 2022).

Follows `microsoft/SimMIM` [code]: 32-px random block masks at 0.6 upsampled to the patch grid, the learnable
mask token replaces masked patch embeddings inside the encoder (core ``ViT(mask_token=True)`` with ``mask``),
a ``Conv1x1(D -> p*p*3) + PixelShuffle(p)`` decoder, and L1 on ImageNet-normalised pixels of masked regions,
``sum(|x - x_hat| M) / (sum(M) + 1e-5) / 3``. Optimiser: AdamW (0.9, 0.999), wd 0.05, ``lr = base * B / 512``,
grad clip 5 (``trainer.gradient_clip_val``). Initialisation (``weight_init="simmim"``) and weight decay
(``decay_mask_token=True``) follow SimMIM's ViT too: every Linear / conv weight and the tokens are drawn from a
normal with std 0.02 truncated at +-0.02, biases 0, LayerNorm (1, 0), and the output projections ``attn.proj`` /
``mlp.fc2`` of block ``l`` (1-based) are divided by ``sqrt(2 l)``; the mask token is weight-decayed (SimMIM's ViT
excludes only ``pos_embed`` and ``cls_token``). Deviation: SimMIM's ViT uses a shared relative position bias and no
absolute positions; vitlab's ViT offers sin-cos / learned / RoPE positions instead (``layer_scale_init: 0.1``
reproduces its LayerScale).
"""

from __future__ import annotations

import math
import types
from typing import Any

import torch
from torch import Tensor, nn

from vitlab.core import ViT
from vitlab.core.optim import make_adamw
from vitlab.pretrain.base import MIMModule, run_blocks
from vitlab.pretrain.losses import masked_l1
from vitlab.pretrain.masking import BlockRandomMask, MaskGenerator, MaskOutput
from vitlab.pretrain.mto import MTO

__all__ = ["SimMIM", "PixelShuffleDecoder", "init_simmim_weights", "simmim_adamw"]

WEIGHT_INITS = ("auto", "simmim", "encoder")


def simmim_adamw(params) -> torch.optim.Optimizer:
    """SimMIM's optimizer: AdamW (0.9, 0.999), eps 1e-8, fused where available (lr and weight decay come
    from the groups)."""
    return make_adamw(params, betas=(0.9, 0.999), eps=1e-8)


def init_simmim_weights(encoder: ViT, std: float = 0.02) -> None:
    """Re-initialise a vitlab ViT the way SimMIM's ``VisionTransformerForSimMIM`` does [code].

    Every ``nn.Linear`` / ``nn.Conv2d`` weight (patch embedding included), the class / mask tokens and a learned
    ``pos_embed`` ~ N(0, std) truncated to [-std, std] (SimMIM overrides ``_trunc_normal_`` with ``a=-std,
    b=std``, so the spread is about 0.54 std); biases 0; LayerNorm weight 1, bias 0; then ``attn.proj.weight`` and
    ``mlp.fc2.weight`` of block ``l`` (1-based) are divided by ``sqrt(2 l)`` (BEiT's ``fix_init_weight``).
    LayerScale values keep their ``layer_scale_init``.
    """

    def tn(t: Tensor) -> None:
        nn.init.trunc_normal_(t, mean=0.0, std=std, a=-std, b=std)

    with torch.no_grad():
        for m in encoder.modules():
            if isinstance(m, (nn.Linear, nn.Conv2d)):
                tn(m.weight)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
            elif isinstance(m, nn.LayerNorm):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
        for name in ("cls_token", "mask_token"):
            t = getattr(encoder, name, None)
            if isinstance(t, nn.Parameter):
                tn(t)
        if getattr(encoder, "pos_embed_type", None) == "learned" and isinstance(encoder.pos_embed, nn.Parameter):
            tn(encoder.pos_embed)
        for layer, blk in enumerate(encoder.blocks, start=1):
            blk.attn.proj.weight.div_(math.sqrt(2.0 * layer))
            blk.mlp.fc2.weight.div_(math.sqrt(2.0 * layer))


def _no_weight_decay_but_mask_token(encoder: nn.Module) -> set[str]:
    """The encoder's ``no_weight_decay()`` without ``mask_token`` (SimMIM's ViT decays its mask token)."""
    return set(type(encoder).no_weight_decay(encoder)) - {"mask_token"}


class PixelShuffleDecoder(nn.Sequential):
    """SimMIM decoder: ``Conv2d(D, s*s*C, 1)`` + ``PixelShuffle(s)`` on a ``(B, D, h, w)`` map."""

    def __init__(self, in_dim: int, stride: int, out_chans: int = 3) -> None:
        super().__init__(nn.Conv2d(in_dim, stride * stride * out_chans, kernel_size=1), nn.PixelShuffle(stride))


class SimMIM(MIMModule):
    """SimMIM pre-training of a vitlab ViT (see the module docstring).

    Args:
        encoder: the ViT; it must have a mask token (``mask_token: true``).
        masking: default ``BlockRandomMask(32, 0.6)``.
        mto: optional :class:`~vitlab.pretrain.mto.MTO` plug-in, applied in the encoder.
        base_lr: 1e-4 (ViT-B 800 ep; ``lr = base * B / 512``).
        lr_batch_divisor: 512.
        weight_init: ``"simmim"`` re-initialises the encoder with :func:`init_simmim_weights` (official);
            ``"encoder"`` keeps the encoder's own weights; ``"auto"`` (default) is ``"simmim"`` unless the
            encoder was loaded from a ``pretrained`` checkpoint, whose weights are never wiped.
        decay_mask_token: weight-decay the mask token as SimMIM's ViT does (True); False excludes it like the
            other tokens (timm convention; SimMIM's Swin also excludes it).
        **kwargs: :class:`MIMModule` / :class:`vitlab.core.VitlabModule` options; the optimizer defaults to
            :func:`simmim_adamw`.
    """

    def __init__(
        self,
        encoder: ViT,
        masking: MaskGenerator | None = None,
        mto: MTO | None = None,
        base_lr: float | None = 1e-4,
        lr_batch_divisor: int = 512,
        weight_init: str = "auto",
        decay_mask_token: bool = True,
        **kwargs,
    ) -> None:
        if weight_init not in WEIGHT_INITS:
            raise ValueError(f"{type(self).__name__}: weight_init must be one of {WEIGHT_INITS}, got {weight_init!r}")
        kwargs.setdefault("optimizer", simmim_adamw)
        super().__init__(encoder=encoder, masking=masking, base_lr=base_lr, lr_batch_divisor=lr_batch_divisor, **kwargs)
        if getattr(encoder, "mask_token", None) is None:
            raise ValueError(f"{type(self).__name__}: the encoder needs a mask token (ViT(mask_token=True))")
        self.save_hparams("encoder", "masking", "mto")
        self.mto = mto
        self.decoder = PixelShuffleDecoder(encoder.embed_dim, encoder.patch_size, encoder.in_chans)
        if weight_init == "auto":
            weight_init = "encoder" if getattr(encoder, "pretrained_source", None) else "simmim"
        if weight_init == "simmim":
            init_simmim_weights(encoder)
        if decay_mask_token and callable(getattr(encoder, "no_weight_decay", None)):
            encoder.no_weight_decay = types.MethodType(_no_weight_decay_but_mask_token, encoder)

    def default_masking(self) -> MaskGenerator:
        return BlockRandomMask(32, 0.6)

    def encode_tokens(self, images: Tensor, masks: MaskOutput, attn_mask: Tensor | None = None,
                      capture=()) -> tuple[Tensor, dict[int, Tensor], Tensor | None]:
        """Mask-token encoder: returns normalised tokens ``(B, prefix + L, D)``, captured block inputs and the
        attention bias used (MTO recalibration merged with ``attn_mask``)."""
        enc = self.encoder
        tokens, pos, _ = enc.prepare_tokens(images, mask=masks.mask)
        if self.mto is not None:
            pre = masks.mask.new_zeros(tokens.shape[0], enc.num_prefix_tokens, dtype=torch.bool)
            is_mask = torch.cat([pre, masks.mask > 0.5], dim=1)
            bias = self.mto.attn_bias(is_mask, self.progress())
            if bias is not None:
                attn_mask = bias if attn_mask is None else attn_mask + bias
            if self.mto.needs_losses:
                capture = tuple(capture) + tuple(self.mto.layer_indices(len(enc.blocks)))
        tokens, saved = run_blocks(enc.blocks, tokens, pos, attn_mask, capture,
                                   checkpointing=enc.grad_checkpointing)
        return enc.norm(tokens), saved, attn_mask

    def to_map(self, tokens: Tensor, grid: tuple[int, int]) -> Tensor:
        p = self.encoder.num_prefix_tokens
        B, _, D = tokens.shape
        return tokens[:, p:].transpose(1, 2).reshape(B, D, *grid)

    def mto_losses(self, saved: dict[int, Tensor], masks: MaskOutput, attn_mask: Tensor | None) -> dict[str, Tensor] | None:
        if self.mto is None or not saved:
            return None
        enc = self.encoder
        pre = masks.mask.new_zeros(masks.mask.shape[0], enc.num_prefix_tokens, dtype=torch.bool)
        is_mask = torch.cat([pre, masks.mask > 0.5], dim=1)
        return self.mto.losses(enc.blocks, saved, is_mask, attn_mask)

    def encode(self, images: Tensor, masks: MaskOutput, batch: dict[str, Tensor]) -> dict[str, Any]:
        tokens, saved, attn_mask = self.encode_tokens(images, masks)
        out: dict[str, Any] = {"tokens": tokens}
        mto = self.mto_losses(saved, masks, attn_mask)
        if mto is not None:
            out["mto"] = mto
        return out

    def decode(self, latent: dict[str, Any], masks: MaskOutput, batch: dict[str, Tensor]) -> dict[str, Any]:
        out = dict(latent)
        out["pred"] = self.decoder(self.to_map(latent["tokens"], masks.grid))
        return out

    def loss(self, out, images, masks, batch) -> dict[str, Tensor]:
        return self.with_plugin_losses(out, masked_l1(out["pred"], images, masks.pixel_mask(self.patch_size)))

    def reconstruct(self, out, images, masks) -> Tensor:
        return out["pred"]
