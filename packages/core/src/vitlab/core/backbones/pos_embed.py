"""Absolute position embeddings: fixed 2-D sin-cos (MAE) and resizing of learned tables.

The sin-cos layout follows MAE (He et al., "Masked Autoencoders Are Scalable Vision Learners",
`facebookresearch/mae`, ``util/pos_embed.py``), re-implemented in torch:

* the channel dimension D is split in two halves; the **first half encodes the column (x)**, the
  second half the row (y) coordinate (MAE builds ``meshgrid(grid_w, grid_h)`` and encodes ``grid[0]``
  first);
* each half is a 1-D embedding ``[sin(p * w_k), cos(p * w_k)]`` with ``w_k = 1 / 10000^(k / (D/4))``,
  ``k = 0 .. D/4 - 1``;
* positions are integer patch coordinates ``0 .. h-1`` / ``0 .. w-1``; tokens in raster order
  (index ``y * w + x``);
* prefix (class) tokens get an all-zero embedding (MAE's ``cls_token=True`` slot).

Because positions are integers, the embedding for a larger grid extends the one for a smaller grid
(the top-left block is identical): vitlab recomputes the table for the actual input grid instead of
interpolating it.
"""

from __future__ import annotations

import math

import torch

__all__ = [
    "get_1d_sincos_pos_embed",
    "get_2d_sincos_pos_embed",
    "resize_pos_embed",
    "infer_pos_embed_layout",
]


def get_1d_sincos_pos_embed(embed_dim: int, pos: torch.Tensor, temperature: float = 10000.0) -> torch.Tensor:
    """1-D sin-cos embedding of (any shape) positions ``pos`` -> ``(pos.numel(), embed_dim)``.

    ``embed_dim`` must be even; output is ``[sin(pos * omega), cos(pos * omega)]`` with
    ``omega_k = temperature^(-k / (embed_dim / 2))`` (MAE ``get_1d_sincos_pos_embed_from_grid``).
    """
    if embed_dim % 2:
        raise ValueError(f"1-D sin-cos embedding needs an even dim, got {embed_dim}")
    omega = torch.arange(embed_dim // 2, dtype=torch.float64) / (embed_dim / 2.0)
    omega = 1.0 / temperature**omega
    out = pos.reshape(-1).to(torch.float64)[:, None] * omega[None, :]
    return torch.cat([torch.sin(out), torch.cos(out)], dim=1)


def get_2d_sincos_pos_embed(
    embed_dim: int,
    grid_size: int | tuple[int, int],
    num_prefix_tokens: int = 0,
    device: torch.device | str | None = None,
    dtype: torch.dtype = torch.float32,
) -> torch.Tensor:
    """MAE 2-D sin-cos position embedding for a ``(h, w)`` patch grid.

    Args:
        embed_dim: channel count D, must be a multiple of 4.
        grid_size: ``h`` (square) or ``(h, w)``.
        num_prefix_tokens: number of all-zero rows prepended (class-token slot, as MAE's ``cls_token=True``).
        device, dtype: of the returned tensor.

    Returns:
        ``(num_prefix_tokens + h * w, embed_dim)`` tensor, tokens in raster order (row-major).
    """
    if embed_dim % 4:
        raise ValueError(f"2-D sin-cos embedding needs embed_dim % 4 == 0, got {embed_dim}")
    h, w = (grid_size, grid_size) if isinstance(grid_size, int) else tuple(grid_size)
    ys, xs = torch.meshgrid(torch.arange(h), torch.arange(w), indexing="ij")  # (h, w) each
    emb_x = get_1d_sincos_pos_embed(embed_dim // 2, xs)  # first half: column coordinate (MAE order)
    emb_y = get_1d_sincos_pos_embed(embed_dim // 2, ys)
    emb = torch.cat([emb_x, emb_y], dim=1)
    if num_prefix_tokens:
        emb = torch.cat([emb.new_zeros(num_prefix_tokens, embed_dim), emb], dim=0)
    return emb.to(device=device, dtype=dtype)


def infer_pos_embed_layout(num_tokens: int, num_prefix_hint: int = 1) -> tuple[int, tuple[int, int]]:
    """Guess ``(num_prefix_tokens, (h, w))`` of a square position table with ``num_tokens`` rows.

    Tries ``num_prefix_hint`` first, then 0, 1, 2 ... 8 prefix tokens; raises ``ValueError`` if no
    square grid fits.
    """
    candidates = [num_prefix_hint] + [p for p in range(0, 9) if p != num_prefix_hint]
    for p in candidates:
        n = num_tokens - p
        if n <= 0:
            continue
        s = math.isqrt(n)
        if s * s == n:
            return p, (s, s)
    raise ValueError(f"cannot infer a square grid from a position table with {num_tokens} rows")


def resize_pos_embed(
    pos_embed: torch.Tensor,
    new_grid: tuple[int, int],
    old_grid: tuple[int, int] | None = None,
    num_prefix_tokens: int = 1,
    mode: str = "bicubic",
) -> torch.Tensor:
    """Resize a learned ``(1, prefix + h*w, D)`` table to ``new_grid`` (prefix rows are kept as is).

    Uses timm's ``resample_abs_pos_embed`` (bicubic, antialias) so that vitlab and timm's
    ``dynamic_img_size`` give identical embeddings. ``old_grid`` defaults to a square grid.
    """
    from timm.layers import resample_abs_pos_embed

    new_grid = (int(new_grid[0]), int(new_grid[1]))
    if old_grid is not None and tuple(old_grid) == new_grid:
        return pos_embed
    return resample_abs_pos_embed(
        pos_embed,
        new_size=list(new_grid),
        old_size=list(old_grid) if old_grid is not None else None,
        num_prefix_tokens=num_prefix_tokens,
        interpolation=mode,
    )
