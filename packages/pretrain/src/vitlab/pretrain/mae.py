"""MAE: masked autoencoder pre-training (He et al., "Masked Autoencoders Are Scalable Vision Learners", CVPR 2022).

Follows the official recipe (`facebookresearch/mae` ``models_mae.py``, ``main_pretrain.py``, ``PRETRAIN.md``)
[code]: 16-px patches with fixed 2-D sin-cos positions, per-sample random masking at 0.75, the encoder sees the
visible tokens only (core ``ViT`` with ``ids_keep``), a 512-d / 8-block / 16-head decoder with its own fixed
sin-cos positions, norm-pix MSE on masked patches, AdamW (0.9, 0.95), wd 0.05, ``lr = blr * B / 256`` with
per-step warmup (lr 0 at the first step) + half-cycle cosine. Weight decay matches the official optimizer too:
every >= 2-D tensor, the class and mask tokens included, is decayed (timm ``add_weight_decay`` with an empty skip
list). Golden-value tests (``tests/pretrain/test_golden_mae.py``) pin forward, loss and masking to the official
code.

SBAM (``masking: SalienceMask``) and MTO (``mto: MTO``) plug in through configuration.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from functools import partial
from typing import Any

import torch
from timm.models.vision_transformer import Block
from torch import Tensor, nn

from vitlab.core import ViT
from vitlab.core.backbones import (
    LoadResult,
    get_2d_sincos_pos_embed,
    init_mae_weights,
    load_checkpoint,
    read_checkpoint,
    unwrap_state_dict,
)
from vitlab.pretrain.base import MIMModule, run_blocks
from vitlab.pretrain.losses import masked_mse
from vitlab.pretrain.masking import MaskGenerator, MaskOutput
from vitlab.pretrain.mto import MTO

__all__ = ["MAE", "MAEDecoder", "convert_mae_decoder"]

_log = logging.getLogger(__name__)

#: official ``models_mae.py`` decoder names -> :class:`MAEDecoder` names (under ``decoder.``)
_DECODER_KEYS = {
    "decoder_embed.": "embed.",
    "decoder_blocks.": "blocks.",
    "decoder_norm.": "norm.",
    "decoder_pred.": "pred.",
}


class MAEDecoder(nn.Module):
    """MAE decoder: ``Linear(D_enc -> d)``, mask tokens, unshuffle, fixed sin-cos positions, ViT blocks, LN, ``Linear(d -> p*p*C)``.

    Args:
        encoder_dim: encoder width.
        patch_size, in_chans: define the prediction size ``p*p*C``.
        embed_dim, depth, num_heads: decoder width/depth/heads (512, 8, 16: ``dec512d8b``).
        mlp_ratio: 4.0.
        num_prefix_tokens: class tokens coming from the encoder (1).
    """

    def __init__(
        self,
        encoder_dim: int,
        patch_size: int = 16,
        in_chans: int = 3,
        embed_dim: int = 512,
        depth: int = 8,
        num_heads: int = 16,
        mlp_ratio: float = 4.0,
        num_prefix_tokens: int = 1,
    ) -> None:
        super().__init__()
        self.embed_dim = embed_dim
        self.num_prefix_tokens = num_prefix_tokens
        self.embed = nn.Linear(encoder_dim, embed_dim)
        self.mask_token = nn.Parameter(torch.zeros(1, 1, embed_dim))
        norm = partial(nn.LayerNorm, eps=1e-6)
        self.blocks = nn.ModuleList(
            Block(embed_dim, num_heads, mlp_ratio, qkv_bias=True, norm_layer=norm) for _ in range(depth)
        )
        self.norm = norm(embed_dim)
        self.pred = nn.Linear(embed_dim, patch_size * patch_size * in_chans)
        self._pos_cache: dict[tuple, Tensor] = {}
        nn.init.normal_(self.mask_token, std=0.02)
        self.apply(init_mae_weights)

    def pos_embed(self, grid: tuple[int, int], device, dtype) -> Tensor:
        if torch.compiler.is_compiling():  # traced: computed in the graph, no host-side cache
            return get_2d_sincos_pos_embed(self.embed_dim, grid, self.num_prefix_tokens, device=device,
                                           dtype=dtype)[None]
        key = (grid, str(device), dtype)
        if key not in self._pos_cache:
            table = get_2d_sincos_pos_embed(self.embed_dim, grid, self.num_prefix_tokens, device=device, dtype=dtype)
            self._pos_cache[key] = table[None]
        return self._pos_cache[key]

    def tokens(self, latent: Tensor, masks: MaskOutput) -> Tensor:
        """Encoder output ``(B, prefix + L_keep, D_enc)`` -> full decoder sequence ``(B, prefix + L, d)``."""
        p = self.num_prefix_tokens
        x = self.embed(latent)
        prefix, x = x[:, :p], x[:, p:]
        B, Lk, d = x.shape
        L = masks.ids_restore.shape[1]
        tok = self.mask_token.to(x.dtype)
        if not masks.uniform:  # per-image ratios: padding slots become mask tokens
            x = torch.where(masks.keep_valid[..., None], x, tok.expand(B, Lk, d))
        x = torch.cat([x, tok.expand(B, L - Lk, d)], dim=1)
        x = torch.gather(x, 1, masks.ids_restore.unsqueeze(-1).expand(-1, -1, d))
        x = torch.cat([prefix, x], dim=1)
        return x + self.pos_embed(masks.grid, x.device, x.dtype)

    def head(self, x: Tensor) -> Tensor:
        return self.pred(self.norm(x))[:, self.num_prefix_tokens :]


def convert_mae_decoder(state: Mapping[str, Tensor], decoder: MAEDecoder | None = None) -> dict[str, Tensor]:
    """Official MAE decoder keys (``decoder_embed``, ``mask_token``, ``decoder_blocks.i``, ``decoder_norm``,
    ``decoder_pred``) -> :class:`MAEDecoder` keys. ``decoder_pos_embed`` is dropped (the table is fixed and
    recomputed; a warning is logged if the checkpoint's is not the sin-cos table)."""
    out: dict[str, Tensor] = {}
    for k, v in state.items():
        if k == "mask_token":
            out["mask_token"] = v
            continue
        if k == "decoder_pos_embed":
            if decoder is not None:
                L = v.shape[1] - decoder.num_prefix_tokens
                side = int(round(L**0.5))
                ref = decoder.pos_embed((side, side), "cpu", torch.float32)
                if ref.shape != v.shape or not torch.allclose(ref, v.float().cpu(), atol=1e-4):
                    _log.warning("MAE checkpoint: decoder_pos_embed is not the fixed sin-cos table; it is ignored")
            continue
        for src, dst in _DECODER_KEYS.items():
            if k.startswith(src):
                out[dst + k[len(src) :]] = v
                break
    return out


class MAE(MIMModule):
    """Masked autoencoder (MAE recipe [code]; see the module docstring).

    Args:
        encoder: the ViT to pre-train (MAE: ``pos_embed: sincos``, ``class_token: true``, patch 16).
        masking: mask generator; default ``RandomPatchMask(0.75)``. ``SalienceMask`` gives SBAM/AMR.
        decoder_embed_dim, decoder_depth, decoder_num_heads, decoder_mlp_ratio: 512, 8, 16, 4.
        norm_pix_loss: per-patch normalised pixel targets (True, the recipe of ``PRETRAIN.md``).
        mto: optional :class:`~vitlab.pretrain.mto.MTO` plug-in, applied in the decoder (where MAE's mask
            tokens live).
        init_checkpoint: an official MAE pre-training checkpoint (``mae_pretrain_vit_*.pth`` with decoder) to
            start from (encoder via core's ``mae`` key map, decoder via :func:`convert_mae_decoder`).
        base_lr: blr (1.5e-4); ``lr = blr * batch * accumulate * world_size / 256``.
        lr_batch_divisor: 256.
        **kwargs: :class:`~vitlab.pretrain.base.MIMModule` / :class:`vitlab.core.VitlabModule` options.

    Weight decay follows the official optimizer: every >= 2-D tensor is decayed, the class and mask
    tokens included (timm ``add_weight_decay`` with an empty skip list).
    """

    decay_tokens = True

    def __init__(
        self,
        encoder: ViT,
        masking: MaskGenerator | None = None,
        decoder_embed_dim: int = 512,
        decoder_depth: int = 8,
        decoder_num_heads: int = 16,
        decoder_mlp_ratio: float = 4.0,
        norm_pix_loss: bool = True,
        mto: MTO | None = None,
        init_checkpoint: str | None = None,
        base_lr: float | None = 1.5e-4,
        lr_batch_divisor: int = 256,
        **kwargs,
    ) -> None:
        super().__init__(encoder=encoder, masking=masking, base_lr=base_lr, lr_batch_divisor=lr_batch_divisor, **kwargs)
        self.save_hparams("encoder", "masking", "mto")
        self.decoder = MAEDecoder(
            encoder.embed_dim,
            encoder.patch_size,
            encoder.in_chans,
            decoder_embed_dim,
            decoder_depth,
            decoder_num_heads,
            decoder_mlp_ratio,
            num_prefix_tokens=encoder.num_prefix_tokens,
        )
        self.norm_pix_loss = norm_pix_loss
        self.mto = mto
        if init_checkpoint:
            res = self.load_official_mae(read_checkpoint(init_checkpoint), source=init_checkpoint)
            if res.missing or res.unexpected:
                _log.warning("MAE init_checkpoint %s: missing %s, unexpected %s", init_checkpoint, *res)

    # ------------------------------------------------------------------ checkpoints
    def load_official_mae(self, checkpoint: Mapping, source: str = "<state dict>") -> LoadResult:
        """Load a ``facebookresearch/mae`` pre-training state dict (encoder + decoder). Returns the keys of
        this module still missing and the checkpoint keys that were not used."""
        state = unwrap_state_dict(checkpoint, source=source)
        enc = load_checkpoint(self.encoder, state, format="mae")
        dec_state = convert_mae_decoder(state, self.decoder)
        res = self.decoder.load_state_dict(dec_state, strict=False)
        enc_names = {"patch_embed.", "cls_token", "pos_embed", "blocks.", "norm."}
        used = set(_DECODER_KEYS) | {"mask_token", "decoder_pos_embed"} | enc_names
        unexpected = [f"encoder.{k}" for k in enc.unexpected] + [f"decoder.{k}" for k in res.unexpected_keys]
        unexpected += [k for k in state if not any(k.startswith(u) for u in used)]
        missing = [f"encoder.{k}" for k in enc.missing] + [f"decoder.{k}" for k in res.missing_keys]
        return LoadResult(missing, unexpected)

    # ------------------------------------------------------------------ hooks
    def encode(self, images: Tensor, masks: MaskOutput, batch: dict[str, Tensor]) -> dict[str, Any]:
        enc = self.encoder
        tokens, pos, _ = enc.prepare_tokens(images, ids_keep=masks.ids_keep)
        attn_mask = None
        if not masks.uniform:  # per-image AMR: padded keys are hidden from every query
            pre = torch.ones(tokens.shape[0], enc.num_prefix_tokens, dtype=torch.bool, device=tokens.device)
            attn_mask = torch.cat([pre, masks.keep_valid], dim=1)[:, None, None, :]
        for i in range(enc.depth):
            tokens = enc.forward_block(i, tokens, pos, attn_mask)
        return {"latent": enc.norm(tokens)}

    def decode(self, latent: dict[str, Any], masks: MaskOutput, batch: dict[str, Tensor]) -> dict[str, Any]:
        dec = self.decoder
        x = dec.tokens(latent["latent"], masks)
        out: dict[str, Any] = {}
        if self.mto is None:
            x, _ = run_blocks(dec.blocks, x)
        else:
            pre = masks.mask.new_zeros(x.shape[0], dec.num_prefix_tokens, dtype=torch.bool)
            is_mask = torch.cat([pre, masks.mask > 0.5], dim=1)
            bias = self.mto.attn_bias(is_mask, self.progress())
            layers = self.mto.layer_indices(len(dec.blocks)) if self.mto.needs_losses else ()
            x, saved = run_blocks(dec.blocks, x, attn_mask=bias, capture=layers)
            if saved:
                out["mto"] = self.mto.losses(dec.blocks, saved, is_mask, bias)
        out["pred"] = dec.head(x)
        return out

    def loss(self, out, images, masks, batch) -> dict[str, Tensor]:
        return self.with_plugin_losses(out, masked_mse(out["pred"], self.target(images), masks.mask))

