"""Reconstruction targets and losses of MAE and SimMIM (re-implemented from the official recipes [code])."""

from __future__ import annotations

import torch
from torch import Tensor

__all__ = ["patchify", "unpatchify", "norm_pix_target", "masked_mse", "masked_l1"]


def patchify(images: Tensor, patch_size: int) -> Tensor:
    """``(B, C, H, W)`` -> ``(B, L, p*p*C)`` in MAE's order (``nchpwq -> nhwpqc``: pixel-major, channel last)."""
    B, C, H, W = images.shape
    p = patch_size
    if H % p or W % p:
        raise ValueError(f"patchify: image {H}x{W} is not a multiple of patch size {p}")
    h, w = H // p, W // p
    x = images.reshape(B, C, h, p, w, p)
    return torch.einsum("nchpwq->nhwpqc", x).reshape(B, h * w, p * p * C)


def unpatchify(patches: Tensor, patch_size: int, grid: tuple[int, int], channels: int = 3) -> Tensor:
    """Inverse of :func:`patchify`: ``(B, L, p*p*C)`` -> ``(B, C, h*p, w*p)``."""
    B = patches.shape[0]
    h, w = grid
    p = patch_size
    x = patches.reshape(B, h, w, p, p, channels)
    return torch.einsum("nhwpqc->nchpwq", x).reshape(B, channels, h * p, w * p)


def norm_pix_target(target: Tensor, eps: float = 1e-6) -> Tensor:
    """MAE ``norm_pix_loss`` target: per patch ``(t - mean) / sqrt(var + 1e-6)``, ``var`` unbiased (``torch.var``)."""
    mean = target.mean(dim=-1, keepdim=True)
    var = target.var(dim=-1, keepdim=True)  # unbiased, as the official code
    return (target - mean) / (var + eps) ** 0.5


def masked_mse(pred: Tensor, target: Tensor, mask: Tensor) -> Tensor:
    """MAE loss: per-patch mean squared error, averaged over masked patches (``mask`` 1 = masked)."""
    loss = ((pred.float() - target.float()) ** 2).mean(dim=-1)
    return (loss * mask).sum() / mask.sum().clamp_min(1.0)


def masked_l1(pred: Tensor, target: Tensor, pixel_mask: Tensor, channels: int | None = None) -> Tensor:
    """SimMIM loss: ``sum(|x - x_hat| * M) / (sum(M) + 1e-5) / C`` with ``M`` a ``(B, 1, H, W)`` pixel mask."""
    c = channels if channels is not None else pred.shape[1]
    diff = (pred.float() - target.float()).abs() * pixel_mask
    return diff.sum() / (pixel_mask.sum() + 1e-5) / c
