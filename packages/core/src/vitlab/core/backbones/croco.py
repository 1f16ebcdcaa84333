"""CroCo v2 encoder-decoder: a shared RoPE2D ViT encoder and a cross-attention decoder (no task head).

Re-implementation of the network body of CroCo / CroCo v2 (Weinzaepfel et al., "CroCo: Self-Supervised
Pre-training for 3D Vision Tasks by Cross-View Completion", NeurIPS 2022; "CroCo v2: Improved Cross-view
Completion Pre-training for Stereo Matching and Optical Flow", ICCV 2023; `naver/croco` ``CroCoNet``) from
vitlab core parts:

* encoder: :class:`~vitlab.core.backbones.ViT` with ``pos_embed="rope"`` (RoPE2D, base 100), no class token;
* ONE shared ``decoder_embed = Linear(enc_dim -> dec_dim)`` applied to the query view and the memory view;
* ``mask_token`` (decoder side, N(0, 0.02)) inserted at masked query positions;
* decoder: :class:`~vitlab.core.backbones.CrossBlock` (self-attention, cross-attention to the other view,
  MLP); the memory is the same tensor for every block; final ``dec_norm``;
* ``prediction_head = Linear(dec_dim -> p*p*3)``: the cross-view-completion pixel head.

The same body serves cross-view-completion pre-training (``vitlab.pretrain.CroCo``) and the CroCo-Stereo
binocular network (``vitlab.stereo.BinocularViT``, which adds a DPT head), so their parameter names match:
``encoder.*, decoder_embed.*, mask_token, dec_blocks.*, dec_norm.*, prediction_head.*``.
"""

from __future__ import annotations

from functools import partial

import torch
import torch.nn as nn

from .decoder import CrossBlock
from .vit import ViT, init_mae_weights

__all__ = ["CROCO_PRESETS", "CroCoNet"]

#: preset -> (enc dim, enc depth, enc heads, dec dim, dec depth, dec heads) [code: naver/croco]
CROCO_PRESETS: dict[str, tuple[int, int, int, int, int, int]] = {
    "B-S": (768, 12, 12, 512, 8, 16),
    "B-B": (768, 12, 12, 768, 12, 12),
    "L-B": (1024, 24, 16, 768, 12, 12),
}


class CroCoNet(nn.Module):
    """CroCo v2 encoder + cross-attention decoder + pixel prediction head.

    Args:
        preset: ``"B-S"``, ``"B-B"`` or ``"L-B"`` (CroCo v2 ViT-Base/Large encoder with a Small/Base decoder,
            table in :data:`CROCO_PRESETS`); ``None`` = use the explicit sizes below.
        enc_embed_dim, enc_depth, enc_num_heads: encoder size (override the preset; defaults = B-B).
        dec_embed_dim, dec_depth, dec_num_heads: decoder size (override the preset).
        patch_size: 16 (CroCo).
        img_size: default grid of the encoder (RoPE works for any multiple of the patch size).
        rope_base: RoPE2D frequency base (100, "RoPE100").
        mlp_ratio: 4. drop_path_rate: 0 (CroCo uses none).
        grad_checkpointing: recompute encoder blocks in backward (memory for large GPU runs).

    Initialisation: encoder as MAE/CroCo (core ViT), decoder Linear layers xavier-uniform, LayerNorm (1, 0),
    ``mask_token`` N(0, 0.02).
    """

    def __init__(
        self,
        preset: str | None = None,
        enc_embed_dim: int | None = None,
        enc_depth: int | None = None,
        enc_num_heads: int | None = None,
        dec_embed_dim: int | None = None,
        dec_depth: int | None = None,
        dec_num_heads: int | None = None,
        patch_size: int = 16,
        img_size: int | tuple[int, int] = 224,
        rope_base: float = 100.0,
        mlp_ratio: float = 4.0,
        drop_path_rate: float = 0.0,
        grad_checkpointing: bool = False,
    ) -> None:
        super().__init__()
        ed, edep, eh, dd, ddep, dh = self.resolve_sizes(
            preset, enc_embed_dim, enc_depth, enc_num_heads, dec_embed_dim, dec_depth, dec_num_heads)
        self.enc_embed_dim, self.enc_depth, self.dec_embed_dim, self.dec_depth = ed, edep, dd, ddep
        self.patch_size = patch_size
        self.encoder = ViT(
            embed_dim=ed, depth=edep, num_heads=eh, patch_size=patch_size, img_size=img_size,
            mlp_ratio=mlp_ratio, pos_embed="rope", rope_base=rope_base, class_token=False,
            drop_path_rate=drop_path_rate, grad_checkpointing=grad_checkpointing,
        )
        self.rope = self.encoder.rope  # one RoPE2D for encoder and decoder
        self.decoder_embed = nn.Linear(ed, dd, bias=True)
        self.mask_token = nn.Parameter(torch.zeros(1, 1, dd))
        dpr = [float(r) for r in torch.linspace(0, drop_path_rate, ddep)]
        self.dec_blocks = nn.ModuleList(
            CrossBlock(dd, dh, mlp_ratio=mlp_ratio, qkv_bias=True, drop_path=dpr[i], rope=self.rope)
            for i in range(ddep)
        )
        self.dec_norm = partial(nn.LayerNorm, eps=1e-6)(dd)
        self.prediction_head = nn.Linear(dd, patch_size**2 * 3)
        self._init_decoder()

    @staticmethod
    def resolve_sizes(preset: str | None = None, *overrides: int | None) -> tuple[int, ...]:
        """``(enc_dim, enc_depth, enc_heads, dec_dim, dec_depth, dec_heads)`` of a preset with overrides."""
        if preset is not None and preset not in CROCO_PRESETS:
            raise ValueError(f"unknown preset {preset!r}; choose one of {sorted(CROCO_PRESETS)}")
        base = CROCO_PRESETS[preset or "B-B"]
        overrides = overrides + (None,) * (6 - len(overrides))
        return tuple(int(o) if o else b for o, b in zip(overrides, base))

    def _init_decoder(self) -> None:
        for m in [self.decoder_embed, self.prediction_head, *self.dec_blocks.modules(), self.dec_norm]:
            init_mae_weights(m)
        nn.init.normal_(self.mask_token, std=0.02)

    @torch.jit.ignore
    def no_weight_decay(self) -> set[str]:
        return {"mask_token"}

    # ------------------------------------------------------------------ forward parts
    def encode(
        self, images: torch.Tensor, ids_keep: torch.Tensor | None = None
    ) -> tuple[list[torch.Tensor], torch.Tensor, tuple[int, int]]:
        """Encoder on (visible) tokens: ``(all block outputs, last one enc-normed; positions (B|1, N', 2); (h, w))``.

        ``ids_keep`` ``(B, N')``: visible patch indices; they are put in raster order (as CroCo's boolean
        selection) before the gather.
        """
        if ids_keep is not None:
            ids_keep = ids_keep.sort(dim=1).values
        x, pos, hw = self.encoder.prepare_tokens(images, ids_keep=ids_keep)
        outs = []
        for i in range(self.encoder.depth):
            x = self.encoder.forward_block(i, x, pos)
            outs.append(x)
        outs[-1] = self.encoder.norm(outs[-1])
        if pos.ndim == 2:
            pos = pos[None].expand(x.shape[0], -1, -1)
        return outs, pos, hw

    def full_positions(self, batch: int, hw: tuple[int, int], device) -> torch.Tensor:
        """Grid positions ``(N, 2)`` (shared by the batch; RoPE2D broadcasts them)."""
        return self.encoder.grid_positions(hw[0], hw[1], device)

    def decode(
        self,
        query: torch.Tensor,
        memory: torch.Tensor,
        hw: tuple[int, int],
        ids_keep: torch.Tensor | None = None,
    ) -> list[torch.Tensor]:
        """Decoder blocks; ``query`` holds the visible tokens at ``ids_keep`` (None = all), ``memory`` all tokens.

        Masked query positions get ``mask_token`` (after ``decoder_embed``). Returns every block output, the
        last one dec-normed. Both views share ``decoder_embed``; the memory is never updated.
        """
        B = query.shape[0]
        n = hw[0] * hw[1]
        q = self.decoder_embed(query)
        if ids_keep is not None:
            full = self.mask_token.to(q.dtype).expand(B, n, -1).clone()
            idx = ids_keep.sort(dim=1).values
            q = full.scatter(1, idx[..., None].expand(-1, -1, q.shape[-1]), q)
        y = self.decoder_embed(memory)
        pos = self.full_positions(B, hw, q.device)
        outs = []
        for blk in self.dec_blocks:
            q, y = blk(q, y, pos, pos)
            outs.append(q)
        outs[-1] = self.dec_norm(outs[-1])
        return outs

    def reconstruct(self, dec_last: torch.Tensor) -> torch.Tensor:
        """Pixel prediction per patch ``(B, L, p*p*3)`` from the (dec-normed) last decoder output."""
        return self.prediction_head(dec_last)

    def cross_view_completion(
        self, view1: torch.Tensor, view2: torch.Tensor, ids_keep: torch.Tensor
    ) -> torch.Tensor:
        """CroCo pretext forward: encode the visible patches ``ids_keep`` of ``view1`` and all of ``view2`` with
        the shared encoder, decode view 1 (mask tokens at the masked places) attending to view 2, predict
        pixels: ``(B, L, p*p*3)`` for every patch of view 1, in raster order."""
        if view1.shape != view2.shape:
            raise ValueError(f"view 1 {tuple(view1.shape)} and view 2 {tuple(view2.shape)} differ")
        enc1, _, hw = self.encode(view1, ids_keep)
        enc2, _, _ = self.encode(view2)
        dec = self.decode(enc1[-1], enc2[-1], hw, ids_keep)
        return self.reconstruct(dec[-1])
