"""SimMIM (Xie et al., "SimMIM: A Simple Framework for Masked Image Modeling", CVPR 2022).

Follows `microsoft/SimMIM` [code]: 32-px random block masks at 0.6 upsampled to the patch grid, the learnable
mask token replaces masked patch embeddings inside the encoder (core ``ViT(mask_token=True)`` with ``mask``),
a ``Conv1x1(D -> p*p*3) + PixelShuffle(p)`` decoder, and L1 on ImageNet-normalised pixels of masked regions,
``sum(|x - x_hat| M) / (sum(M) + 1e-5) / 3``. Optimiser: AdamW (0.9, 0.999), wd 0.05, ``lr = base * B / 512``,
grad clip 5 (``trainer.gradient_clip_val``). Deviation: SimMIM's ViT uses a shared relative position bias and
no absolute positions; vitlab's ViT offers sin-cos / learned / RoPE positions instead (``layer_scale_init: 0.1``
reproduces its LayerScale).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from vitlab.core import ViT
from vitlab.core.optim import make_adamw
from vitlab.pretrain.base import MIMModule, run_blocks
from vitlab.pretrain.losses import masked_l1
from vitlab.pretrain.masking import BlockRandomMask, MaskGenerator, MaskOutput
from vitlab.pretrain.mto import MTO

__all__ = ["SimMIM", "PixelShuffleDecoder", "simmim_adamw"]


def simmim_adamw(params) -> torch.optim.Optimizer:
    """SimMIM's optimizer: AdamW (0.9, 0.999), eps 1e-8, fused where available (lr and weight decay come
    from the groups)."""
    return make_adamw(params, betas=(0.9, 0.999), eps=1e-8)


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
        **kwargs,
    ) -> None:
        kwargs.setdefault("optimizer", simmim_adamw)
        super().__init__(encoder=encoder, masking=masking, base_lr=base_lr, lr_batch_divisor=lr_batch_divisor, **kwargs)
        if getattr(encoder, "mask_token", None) is None:
            raise ValueError(f"{type(self).__name__}: the encoder needs a mask token (ViT(mask_token=True))")
        self.save_hparams("encoder", "masking", "mto")
        self.mto = mto
        self.decoder = PixelShuffleDecoder(encoder.embed_dim, encoder.patch_size, encoder.in_chans)

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
