"""2-D rotary position embedding (RoPE2D) and a RoPE attention module, as in CroCo v2.

Re-implementation of the RoPE2D of CroCo v2 (Weinzaepfel et al., "CroCo v2: Improved Cross-view
Completion Pre-training for Stereo Matching and Optical Flow", `naver/croco` ``models/pos_embed.py``):

* positions are integer patch coordinates ``(y, x)``;
* a head vector of size ``Dh`` is split into halves ``[u_y ; u_x]`` of size ``D = Dh / 2``; the first
  half is rotated with the row coordinate ``y``, the second with the column ``x``;
* 1-D RoPE per half: ``theta_i = p * base^(-2i / D)``, ``i = 0 .. D/2 - 1``, ``f = [theta ; theta]``,
  ``rope(u, p) = u * cos(f) + rot(u) * sin(f)`` with ``rot([a ; b]) = [-b ; a]`` (rotate-half, not
  interleaved). ``base = 100`` in CroCo v2 ("RoPE100").

Since each 2x2 rotation is orthogonal and the angles are linear in the position, ``<rope(q, p), rope(k, p')>``
depends only on ``p - p'``: attention scores are translation invariant.
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

__all__ = ["RoPE2D", "RoPEAttention", "rotate_half"]


def rotate_half(x: torch.Tensor) -> torch.Tensor:
    """``rot([a ; b]) = [-b ; a]`` on the last dimension."""
    a, b = x.chunk(2, dim=-1)
    return torch.cat([-b, a], dim=-1)


class RoPE2D(nn.Module):
    """CroCo's 2-D RoPE (parameter-free; can be shared by every attention module of a network).

    Args:
        base: frequency base (CroCo v2: 100).
        f0: frequency scale (CroCo's ``F0``, 1.0).

    ``forward(tokens, positions)``: ``tokens`` (B, H, N, Dh) with ``Dh % 4 == 0``; ``positions``
    (B, N, 2) or (N, 2) holding ``(y, x)`` (integer or float; any sign). Returns rotated tokens, same
    shape and dtype (the rotation is computed in float32). cos/sin are memoised per positions tensor
    (see :meth:`cos_sin`).
    """

    def __init__(self, base: float = 100.0, f0: float = 1.0) -> None:
        super().__init__()
        self.base = float(base)
        self.f0 = float(f0)
        self._cache: dict[tuple, tuple] = {}

    def extra_repr(self) -> str:
        return f"base={self.base}, f0={self.f0}"

    def _inv_freq(self, d: int, device: torch.device) -> torch.Tensor:
        return 1.0 / (self.base ** (torch.arange(0, d, 2, device=device, dtype=torch.float32) / d))

    def _angles(self, d: int, pos: torch.Tensor) -> torch.Tensor:
        theta = self.f0 * pos.to(torch.float32)[..., None] * self._inv_freq(d, pos.device)
        return torch.cat([theta, theta], dim=-1)

    def cos_sin(self, d: int, positions: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """cos/sin of ``f`` for ``positions`` (..., 2) and half-size ``d`` -> two ``(..., 2, d)`` tensors.

        Results are memoised per positions tensor (identity), so passing the same positions tensor to
        every block (as :class:`~vitlab.core.backbones.ViT` does, caching one per grid) computes them
        once. No host-device synchronisation is involved.
        """
        if (
            torch.compiler.is_compiling()
        ):  # identity memo is host-side bookkeeping: let the compiler fuse instead
            f = self._angles(d, positions)
            return f.cos(), f.sin()
        # inference tensors have no version counter and must never meet autograd: separate entries
        inference = positions.is_inference() or torch.is_inference_mode_enabled()
        version = None if positions.is_inference() else positions._version
        key = (id(positions), d, inference)
        hit = self._cache.get(key)
        if hit is not None and hit[0] is positions and hit[1] == version:
            return hit[2], hit[3]
        f = self._angles(d, positions)  # (..., 2, d)
        cos, sin = f.cos(), f.sin()
        if len(self._cache) >= 8:
            self._cache.pop(next(iter(self._cache)))
        self._cache[key] = (positions, version, cos, sin)
        return cos, sin

    def forward(self, tokens: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
        if tokens.ndim != 4:
            raise ValueError(f"RoPE2D expects tokens (B, heads, N, Dh), got shape {tuple(tokens.shape)}")
        dh = tokens.shape[-1]
        if dh % 4:
            raise ValueError(f"RoPE2D needs a head dim divisible by 4, got {dh}")
        if positions.shape[-1] != 2 or positions.shape[-2] != tokens.shape[-2]:
            raise ValueError(
                f"positions must be (B, N, 2) or (N, 2) with N={tokens.shape[-2]}, got {tuple(positions.shape)}"
            )
        d = dh // 2
        out_dtype = tokens.dtype
        t = tokens.float()
        cos, sin = self.cos_sin(d, positions)  # (B, N, 2, d) or (N, 2, d)
        if positions.ndim == 2:
            cos, sin = cos[None], sin[None]
        halves = []
        for axis, u in enumerate(t.chunk(2, dim=-1)):  # axis 0: y on the first half, axis 1: x
            c, s = cos[:, None, :, axis], sin[:, None, :, axis]  # broadcast over heads
            halves.append(u * c + rotate_half(u) * s)
        return torch.cat(halves, dim=-1).to(out_dtype)


class RoPEAttention(nn.Module):
    """Multi-head attention with RoPE2D on q and k, fused SDPA; self- or cross-attention.

    Parameters have timm's names (``qkv``: Linear(dim, 3*dim), ``proj``) so state dicts match timm /
    MAE blocks. For cross-attention the fused weight is sliced: q from ``x`` with the first ``dim`` rows,
    k and v from ``context`` with the other rows (CroCo's ``projq/projk/projv`` concatenated in that
    order, see :func:`vitlab.core.backbones.checkpoint.convert_croco_decoder`).

    Args:
        dim: token width.
        num_heads: number of heads (``dim / num_heads`` must be divisible by 4 when ``rope`` is used).
        qkv_bias: bias on the q/k/v projection.
        attn_drop, proj_drop: dropout rates.
        rope: a :class:`RoPE2D` (shared is fine) or ``None`` for plain attention.
        **kwargs: accepted and ignored when harmless (timm ``Block`` passes ``norm_layer``, ``proj_bias`` ...);
            ``qk_norm=True`` is rejected.

    ``forward(x, pos=None, context=None, context_pos=None, attn_mask=None)``: ``x`` (B, N, dim);
    ``pos`` (B, N, 2) / (N, 2) integer (y, x); ``context`` (B, M, dim) for cross-attention (default:
    ``x``), rotated with ``context_pos`` (default ``pos`` when ``context`` is None). With ``rope`` set, the
    positions of the tokens that are rotated must be given.
    """

    def __init__(
        self,
        dim: int,
        num_heads: int = 8,
        qkv_bias: bool = False,
        attn_drop: float = 0.0,
        proj_drop: float = 0.0,
        rope: RoPE2D | None = None,
        **kwargs,
    ) -> None:
        super().__init__()
        if kwargs.get("qk_norm") or kwargs.get("scale_norm"):
            raise ValueError("RoPEAttention does not support qk_norm / scale_norm")
        if dim % num_heads:
            raise ValueError(f"dim {dim} not divisible by num_heads {num_heads}")
        self.dim = dim
        self.num_heads = num_heads
        self.head_dim = dim // num_heads
        if rope is not None and self.head_dim % 4:
            raise ValueError(f"RoPE2D needs head_dim % 4 == 0, got {self.head_dim}")
        self.qkv = nn.Linear(dim, dim * 3, bias=qkv_bias)
        self.attn_drop = nn.Dropout(attn_drop)
        self.proj = nn.Linear(dim, dim, bias=kwargs.get("proj_bias", True))
        self.proj_drop = nn.Dropout(proj_drop)
        self.rope = rope

    def _heads(self, t: torch.Tensor) -> torch.Tensor:
        b, n, _ = t.shape
        return t.reshape(b, n, self.num_heads, self.head_dim).transpose(1, 2)

    def forward(
        self,
        x: torch.Tensor,
        pos: torch.Tensor | None = None,
        context: torch.Tensor | None = None,
        context_pos: torch.Tensor | None = None,
        attn_mask: torch.Tensor | None = None,
        **kwargs,
    ) -> torch.Tensor:
        b, n, c = x.shape
        if context is None:
            q, k, v = self.qkv(x).reshape(b, n, 3, self.num_heads, self.head_dim).permute(2, 0, 3, 1, 4)
            context_pos = pos
        else:
            w, bias = self.qkv.weight, self.qkv.bias
            q = self._heads(F.linear(x, w[:c], None if bias is None else bias[:c]))
            kv = F.linear(context, w[c:], None if bias is None else bias[c:])
            m = context.shape[1]
            k, v = kv.reshape(b, m, 2, self.num_heads, self.head_dim).permute(2, 0, 3, 1, 4)
        if self.rope is not None:
            if pos is None or context_pos is None:
                raise ValueError("RoPEAttention with rope needs positions (pos / context_pos)")
            q = self.rope(q, pos)
            k = self.rope(k, context_pos)
        out = F.scaled_dot_product_attention(
            q, k, v, attn_mask=attn_mask, dropout_p=self.attn_drop.p if self.training else 0.0
        )
        out = out.transpose(1, 2).reshape(b, n, c)
        return self.proj_drop(self.proj(out))
