"""Cross-attention decoder block (CroCo style).

Re-implementation of the decoder block of CroCo / CroCo v2 (Weinzaepfel et al., `naver/croco`
``models/blocks.py`` ``DecoderBlock``), pre-norm::

    x = x + SelfAttn(LN1(x))                       # RoPE with xpos
    y_ = LN_y(y)
    x = x + CrossAttn(q=LN2(x), k=v=y_)            # RoPE: q with xpos, k with ypos
    x = x + MLP(LN3(x))
    return x, y                                    # the memory y is returned unchanged

Parameter names: ``norm1, attn, norm2, cross_attn, norm_y, norm3, mlp.fc1, mlp.fc2`` (CroCo's, except
that the cross-attention keeps one fused ``cross_attn.qkv`` = cat(projq, projk, projv); see
:func:`vitlab.core.backbones.checkpoint.convert_croco_decoder`).
"""

from __future__ import annotations

from functools import partial

import torch
import torch.nn as nn
from timm.layers import DropPath, Mlp

from .rope import RoPE2D, RoPEAttention

__all__ = ["CrossBlock"]


class CrossBlock(nn.Module):
    """CroCo decoder block: self-attention, cross-attention to a memory ``y``, MLP.

    Args:
        dim: token width (both streams).
        num_heads: attention heads.
        mlp_ratio: MLP hidden width / dim (4).
        qkv_bias: bias on q/k/v projections (True).
        drop_path: stochastic-depth rate on the three residual branches (0).
        rope: shared :class:`RoPE2D`, or ``None`` (no rotary embedding; add absolute embeddings outside).
        attn_drop, proj_drop: dropout rates (0).
        norm_eps: LayerNorm epsilon (1e-6).

    ``forward(x, y, xpos=None, ypos=None) -> (x_out, y)``: ``x`` (B, N, dim) queries, ``y`` (B, M, dim) memory;
    ``xpos`` (B, N, 2) / ``ypos`` (B, M, 2) integer (y, x) patch coordinates, required when ``rope`` is set.
    ``y`` is returned as the same object, untouched, so blocks can be chained ``x, y = blk(x, y, ...)``.
    """

    def __init__(
        self,
        dim: int,
        num_heads: int,
        mlp_ratio: float = 4.0,
        qkv_bias: bool = True,
        drop_path: float = 0.0,
        rope: RoPE2D | None = None,
        attn_drop: float = 0.0,
        proj_drop: float = 0.0,
        norm_eps: float = 1e-6,
    ) -> None:
        super().__init__()
        norm = partial(nn.LayerNorm, eps=norm_eps)
        self.norm1 = norm(dim)
        self.attn = RoPEAttention(
            dim, num_heads, qkv_bias=qkv_bias, attn_drop=attn_drop, proj_drop=proj_drop, rope=rope
        )
        self.norm2 = norm(dim)
        self.cross_attn = RoPEAttention(
            dim, num_heads, qkv_bias=qkv_bias, attn_drop=attn_drop, proj_drop=proj_drop, rope=rope
        )
        self.norm_y = norm(dim)
        self.norm3 = norm(dim)
        self.mlp = Mlp(
            in_features=dim, hidden_features=int(dim * mlp_ratio), act_layer=nn.GELU, drop=proj_drop
        )
        self.drop_path = DropPath(drop_path) if drop_path > 0.0 else nn.Identity()

    def forward(
        self,
        x: torch.Tensor,
        y: torch.Tensor,
        xpos: torch.Tensor | None = None,
        ypos: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        x = x + self.drop_path(self.attn(self.norm1(x), pos=xpos))
        y_ = self.norm_y(y)
        x = x + self.drop_path(self.cross_attn(self.norm2(x), pos=xpos, context=y_, context_pos=ypos))
        x = x + self.drop_path(self.mlp(self.norm3(x)))
        return x, y
