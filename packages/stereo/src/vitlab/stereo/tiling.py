"""Inference geometry: tiled inference, full-frame padding and the ``scale`` resize.

* :func:`tiled_predict`: CroCo-Stereo's tiled inference (`naver/croco` ``stereoflow/engine.py``
  ``tiled_pred``), re-implemented. The network runs on overlapping windows of the training crop size;
  per-pixel predictions are fused with confidence weights, so any image size is handled and the network always
  sees its training resolution.
* :func:`forward_padded`: one full-frame forward of any size (replicate-padded to a multiple of 32).
* :func:`rescale_views` / :func:`restore_disparity`: run the network at ``scale`` x the input size and bring
  the disparity back (used by ``StereoMatching.predict_disparity`` and :mod:`vitlab.stereo.predict`).
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
import torch
import torch.nn.functional as F

__all__ = ["CONF_MODES", "budget_window", "confidence_weight", "forward_padded", "frame_tokens", "rescale_views",
           "restore_disparity", "tile_offsets", "tiled_predict"]

#: the DPT head's fusion needs sides that are multiples of this (spec §1.3)
SIDE_MULTIPLE = 32

CONF_MODES = ("conf_expsigmoid_15_3", "conf_expbeta3", "uniform")


def confidence_weight(conf: torch.Tensor, mode: str = "conf_expsigmoid_15_3") -> torch.Tensor:
    """Fusion weight from the raw confidence channel.

    ``conf_expsigmoid_15_3`` (CroCo-Stereo default): ``exp(-15 * 2 (sigmoid(c / 3) - 1/2))``;
    ``conf_expbeta3`` (ETH3D model): ``exp(-3 c)``; ``uniform``: 1 (plain averaging).
    """
    if mode == "conf_expsigmoid_15_3":
        return torch.exp(-15.0 * 2.0 * (torch.sigmoid(conf / 3.0) - 0.5))
    if mode == "conf_expbeta3":
        return torch.exp(-3.0 * conf)
    if mode == "uniform":
        return torch.ones_like(conf)
    raise ValueError(f"conf_mode must be one of {CONF_MODES}, got {mode!r}")


def tile_offsets(total: int, window: int, overlap: float) -> list[int]:
    """``n = 1 + ceil((T - w) / ((1 - o) w))`` windows at ``round(linspace(0, T - w, n))``."""
    if total < window:
        raise ValueError(f"image side {total} is smaller than the window {window}")
    if not 0.0 <= overlap < 1.0:
        raise ValueError(f"overlap must be in [0, 1), got {overlap}")
    n = 1 + math.ceil((total - window) / ((1.0 - overlap) * window))
    return [int(v) for v in np.round(np.linspace(0, total - window, n))]


@torch.no_grad()
def tiled_predict(
    model: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
    left: torch.Tensor,
    right: torch.Tensor,
    tile_size: tuple[int, int] | list[int],
    overlap: float = 0.7,
    conf_mode: str = "conf_expsigmoid_15_3",
    max_batch: int = 8,
    upscale_rule: str = "fixed",
) -> tuple[torch.Tensor, torch.Tensor]:
    """Disparity and fused confidence weight of a full pair: ``(B, 1, H, W)`` each.

    Args:
        model: ``model(left, right) -> (B, 2, h, w)`` (disparity, raw confidence) on ``tile_size`` windows.
        left, right: ``(B, 3, H, W)`` normalised images of any size.
        tile_size: window ``(h, w)``, normally the training crop (multiples of 32).
        overlap: 0.7 for validation, 0.9 for benchmark submissions (CroCo-Stereo).
        conf_mode: see :func:`confidence_weight`.
        max_batch: windows per forward call.
        upscale_rule: an image smaller than the window is upscaled (bicubic) by ``s`` and the result resized
            back to ``(H, W)`` with the disparity multiplied by the inverse x-factor. ``"fixed"`` (default):
            ``s = max(win_w / W, win_h / H)``, size ``ceil(side * s)`` (never below the window), disparity and
            weight resized back bilinearly. ``"official"`` reproduces CroCo-Stereo's ``tiled_pred`` exactly:
            ``s = max(win_w / W, win_h / W)`` (both divided by W), size ``round(side * s)`` (Python rounding),
            resized back bicubically; if rounding leaves a side below the window the official code fails an
            assertion, here that side is raised to the window.
    """
    th, tw = int(tile_size[0]), int(tile_size[1])
    B, _, H, W = left.shape
    if right.shape != left.shape:
        raise ValueError(f"left {tuple(left.shape)} and right {tuple(right.shape)} differ")
    scale = 1.0
    if H < th or W < tw:
        if upscale_rule == "fixed":
            scale = max(tw / W, th / H)
            size = (max(th, math.ceil(H * scale)), max(tw, math.ceil(W * scale)))
        elif upscale_rule == "official":
            scale = max(tw / W, th / W)
            size = (max(th, round(H * scale)), max(tw, round(W * scale)))
        else:
            raise ValueError(f"upscale_rule must be 'fixed' or 'official', got {upscale_rule!r}")
        left = F.interpolate(left, size=size, mode="bicubic", align_corners=False)
        right = F.interpolate(right, size=size, mode="bicubic", align_corners=False)
    Hs, Ws = left.shape[-2:]
    ys, xs = tile_offsets(Hs, th, overlap), tile_offsets(Ws, tw, overlap)
    windows = [(y, x) for y in ys for x in xs]
    num = left.new_zeros(B, 1, Hs, Ws)
    den = left.new_zeros(B, 1, Hs, Ws)
    for k in range(0, len(windows), max(1, max_batch // B)):
        chunk = windows[k: k + max(1, max_batch // B)]
        lt = torch.cat([left[..., y: y + th, x: x + tw] for y, x in chunk])
        rt = torch.cat([right[..., y: y + th, x: x + tw] for y, x in chunk])
        out = model(lt, rt).float()
        for j, (y, x) in enumerate(chunk):
            o = out[j * B: (j + 1) * B]
            w = confidence_weight(o[:, 1:2], conf_mode)
            num[..., y: y + th, x: x + tw] += w * o[:, :1]
            den[..., y: y + th, x: x + tw] += w
    disp = num / (den + 1e-16)
    conf = den
    if scale != 1.0:
        mode = "bicubic" if upscale_rule == "official" else "bilinear"
        disp = F.interpolate(disp, size=(H, W), mode=mode, align_corners=False) * (W / float(Ws))
        conf = F.interpolate(conf, size=(H, W), mode=mode, align_corners=False)
    return disp, conf


def forward_padded(model: Callable[[torch.Tensor, torch.Tensor], torch.Tensor], left: torch.Tensor,
                   right: torch.Tensor) -> torch.Tensor:
    """Full-frame forward for any size: replicate-pad to a multiple of 32, run ``model``, crop back."""
    H, W = left.shape[-2:]
    ph, pw = (-H) % SIDE_MULTIPLE, (-W) % SIDE_MULTIPLE
    if ph or pw:
        left = F.pad(left, (0, pw, 0, ph), mode="replicate")
        right = F.pad(right, (0, pw, 0, ph), mode="replicate")
    return model(left, right)[..., :H, :W]


def rescale_views(left: torch.Tensor, right: torch.Tensor, scale: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Both ``(B, 3, H, W)`` views resized to ``round(H * scale) x round(W * scale)`` (antialiased bilinear)."""
    H, W = left.shape[-2:]
    size = (max(1, round(H * scale)), max(1, round(W * scale)))
    if size == (H, W):
        return left, right
    return tuple(F.interpolate(x, size=size, mode="bilinear", align_corners=False, antialias=scale < 1)
                 for x in (left, right))


def restore_disparity(disp: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """``(B, C, h, w)`` disparity (and confidence) back to ``size`` (bilinear); disparity times ``W / w``."""
    h, w = disp.shape[-2:]
    if (h, w) == tuple(size):
        return disp
    return F.interpolate(disp, size=tuple(size), mode="bilinear", align_corners=False) * (size[1] / float(w))


def frame_tokens(height: int, width: int, patch_size: int = 16) -> int:
    """Tokens per view of one full-frame forward of an ``height x width`` frame (sides padded to 32)."""
    m = SIDE_MULTIPLE
    return (math.ceil(height / m) * m // patch_size) * (math.ceil(width / m) * m // patch_size)


def budget_window(height: int, width: int, max_tokens: int, patch_size: int = 16) -> tuple[int, int]:
    """The largest near-square window (sides multiples of 32, inside the frame) of at most ``max_tokens``
    tokens: the tile of a frame too large for one forward (``StereoMatching(max_tokens=...)``).

    A side of the frame shorter than the square is taken whole and the other side grows to fill the budget.
    """
    m = SIDE_MULTIPLE
    per_cell = (m // patch_size) ** 2  # tokens in a 32 x 32 cell
    cells = max_tokens // per_cell
    if cells < 1:
        raise ValueError(f"max_tokens must be >= {per_cell} (one {m} x {m} window), got {max_tokens}")
    fh, fw = max(1, height // m), max(1, width // m)  # whole cells inside the frame
    hc = min(fh, max(1, math.isqrt(cells)))
    wc = min(fw, max(1, cells // hc))
    hc = min(fh, max(1, cells // wc))
    return hc * m, wc * m
