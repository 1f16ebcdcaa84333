"""Stereo losses of CroCo-Stereo, UniTT-Stereo and MaDis-Stereo (re-implemented from `naver/croco`
``stereoflow/criterion.py``, `00kim/UniTT-Stereo` ``consistency_loss.py``).

Every disparity loss is averaged over pixels with finite ground truth only (invalid GT = +inf in vitlab).
Predictions are ``(B, 2, H, W)`` = disparity, raw confidence (or ``(B, 1, H, W)`` for :class:`StereoL1Loss`).
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from vitlab.core.backbones import masked_mse, norm_pix_target

__all__ = [
    "CONSISTENCY_MODES",
    "LaplacianLoss",
    "LaplacianLossBounded2",
    "MaskedMSE",
    "StereoL1Loss",
    "build_stereo_loss",
    "feature_warp_consistency",
]


def _valid(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    if target.ndim == 3:
        target = target[:, None]
    if target.shape[-2:] != pred.shape[-2:] or target.shape[0] != pred.shape[0]:
        raise ValueError(f"prediction {tuple(pred.shape)} and target {tuple(target.shape)} sizes differ")
    return target.float()


def _masked_mean(x: torch.Tensor, valid: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """Mean of ``x`` over ``valid`` as a masked sum: fixed shapes and no host sync; 0 (graph kept, for DDP)
    when nothing is valid (``like``, the prediction, is kept for the signature: ``x`` already carries
    its graph)."""
    valid = valid.expand_as(x)
    x = torch.where(valid, x, torch.zeros((), dtype=x.dtype, device=x.device))
    return x.sum() / valid.sum().clamp(min=1).to(x.dtype)


class StereoL1Loss(nn.Module):
    """``mean |d_hat - d|`` over finite GT (channel 0 of the prediction)."""

    def forward(self, pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        target = _valid(pred, target)
        pred = pred.float()  # losses in fp32 under bf16 autocast
        valid = torch.isfinite(target)
        err = (pred[:, :1] - torch.where(valid, target, 0.0)).abs()
        return _masked_mean(err, valid, pred)


class LaplacianLoss(nn.Module):
    """``mean[ |d_hat - d| * exp(-c) + c ]`` (CroCo-Stereo's ETH3D model); ``c`` = raw confidence channel."""

    def forward(self, pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        target = _valid(pred, target)
        pred = pred.float()  # losses in fp32 under bf16 autocast
        valid = torch.isfinite(target)
        d, c = pred[:, :1], pred[:, 1:2]
        err = (d - torch.where(valid, target, 0.0)).abs() * torch.exp(-c) + c
        return _masked_mean(err, valid, pred)


class LaplacianLossBounded2(nn.Module):
    """CroCo-Stereo default: ``c' = 2a (sigmoid(c / b) - 1/2)`` in (-a, a); ``mean[ |d_hat - d| e^(-c') + c' ]``.

    Args:
        a, b: bounds (3, 3 in CroCo-Stereo). The constant ``log 2`` of the Laplace likelihood is dropped.
    """

    def __init__(self, a: float = 3.0, b: float = 3.0) -> None:
        super().__init__()
        self.a, self.b = float(a), float(b)

    def forward(self, pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        target = _valid(pred, target)
        pred = pred.float()  # losses in fp32 under bf16 autocast
        valid = torch.isfinite(target)
        d, c = pred[:, :1], pred[:, 1:2]
        c = 2 * self.a * (torch.sigmoid(c / self.b) - 0.5)
        err = (d - torch.where(valid, target, 0.0)).abs() * torch.exp(-c) + c
        return _masked_mean(err, valid, pred)


LOSSES = {"laplacian_bounded2": LaplacianLossBounded2, "laplacian": LaplacianLoss, "l1": StereoL1Loss}


def build_stereo_loss(name: str) -> nn.Module:
    if name not in LOSSES:
        raise ValueError(f"unknown stereo loss {name!r}; choose one of {sorted(LOSSES)}")
    return LOSSES[name]()


class MaskedMSE(nn.Module):
    """CroCo's reconstruction loss on masked patches; with ``norm_pix`` each target patch is standardised
    (core :func:`~vitlab.core.backbones.patches.norm_pix_target` / :func:`~vitlab.core.backbones.patches.masked_mse`).

    ``forward(pred (B, L, P), target (B, L, P), mask (B, L) bool, True = masked)``:
    ``sum_i m_i mean_j (p_ij - t_ij)^2 / sum_i m_i``. Returns 0 (with graph) when nothing is masked.
    """

    def __init__(self, norm_pix: bool = True, eps: float = 1e-6) -> None:
        super().__init__()
        self.norm_pix, self.eps = norm_pix, eps

    def forward(self, pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        if self.norm_pix:
            target = norm_pix_target(target, self.eps)
        return masked_mse(pred, target, mask)  # 0 with graph when nothing is masked


CONSISTENCY_MODES = ("fixed", "official")


def _downsample_disparity(disparity: torch.Tensor, hw: tuple[int, int], patch: int) -> torch.Tensor:
    """GT (B, 1, H, W), inf invalid -> nearest 1/patch map in patch units (0 = invalid), as UniTT does."""
    d = torch.where(torch.isfinite(disparity), disparity, torch.zeros_like(disparity))
    return F.interpolate(d, size=hw, mode="nearest") / patch


def feature_warp_consistency(
    feat_left: torch.Tensor,
    feat_right: torch.Tensor,
    disparity: torch.Tensor,
    hw: tuple[int, int],
    patch_size: int = 16,
    visible: torch.Tensor | None = None,
    mode: str = "fixed",
) -> torch.Tensor:
    """UniTT-Stereo feature consistency: L1 between left features and right features warped by GT disparity.

    Args:
        feat_left: ``(B, N, C)`` last-layer left encoder tokens, zeros at masked positions.
        feat_right: ``(B, N, C)`` last-layer right encoder tokens.
        disparity: GT ``(B, 1, H, W)`` in pixels, +inf invalid; downsampled (nearest) to the token grid and
            divided by ``patch_size`` (patch units); valid where > 0.
        hw: token grid ``(h, w)``.
        visible: ``(B, N)`` bool, True where the left token was visible (``fixed`` mode only).
        mode: ``"fixed"`` (default; our reconstruction of the intent): tokens permuted to ``(B, C, h, w)``,
            ``grid_sample`` at ``x - d`` in token coordinates (align_corners=True), mean L1 over valid AND
            visible tokens. ``"official"`` reproduces the official code exactly, three bugs included [code]:
            (a) tokens and the ``(B, 1, h, w)`` disparity map are both reinterpreted by a raw
            ``reshape(1, ., h, w*B)``, (b) the patch-unit shift is added to a [0, 1]-normalised grid
            (Monodepth's ``apply_disparity``, ``grid_sample(align_corners=True)``), (c) masked (zero) tokens are
            included; ``mean(|F_L - F~_L| * valid)`` over all ``C x h x w*B`` entries. Pinned to the official
            numbers by ``tests/stereo/test_golden_stereo.py``.
    """
    if mode not in CONSISTENCY_MODES:
        raise ValueError(f"consistency mode must be one of {CONSISTENCY_MODES}, got {mode!r}")
    B, N, C = feat_left.shape
    h, w = hw
    d16 = _downsample_disparity(disparity, hw, patch_size)  # (B, 1, h, w)
    if mode == "fixed":
        fl = feat_left.transpose(1, 2).reshape(B, C, h, w)
        fr = feat_right.transpose(1, 2).reshape(B, C, h, w)
        ys, xs = torch.meshgrid(torch.arange(h, device=fl.device, dtype=fl.dtype),
                                torch.arange(w, device=fl.device, dtype=fl.dtype), indexing="ij")
        x = xs[None] - d16[:, 0].to(fl.dtype)
        gx = 2 * x / max(w - 1, 1) - 1
        gy = (2 * ys / max(h - 1, 1) - 1)[None].expand(B, -1, -1)
        warped = F.grid_sample(fr, torch.stack([gx, gy], dim=-1), mode="bilinear", padding_mode="zeros",
                               align_corners=True)
        valid = (d16 > 0)
        if visible is not None:
            valid = valid & visible.reshape(B, 1, h, w)
        valid = valid.expand(-1, C, -1, -1)
        return _masked_mean((fl - warped).abs(), valid, fl)
    # official: the three bugs, kept for reproduction. Tokens AND the disparity map are reinterpreted by a raw
    # reshape to one (1, ., h, w*B) "image" (not a side-by-side layout), then Monodepth's apply_disparity
    fl = feat_left.reshape(1, C, h, w * B)
    fr = feat_right.reshape(1, C, h, w * B)
    disp = d16.reshape(1, 1, h, w * B)
    W = w * B
    x_base = torch.linspace(0, 1, W, device=fl.device, dtype=fl.dtype)[None, None].expand(1, h, W)
    y_base = torch.linspace(0, 1, h, device=fl.device, dtype=fl.dtype)[None, :, None].expand(1, h, W)
    grid = torch.stack([x_base - disp[:, 0].to(fl.dtype), y_base], dim=-1)
    warped = F.grid_sample(fr, 2 * grid - 1, mode="bilinear", padding_mode="zeros", align_corners=True)
    valid = (disp > 0).to(fl.dtype)
    return ((fl - warped).abs() * valid).mean()
