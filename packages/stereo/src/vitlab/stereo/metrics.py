"""Stereo metrics as one torchmetrics ``Metric`` (states are sums, so they sync across DDP ranks).

* CroCo-Stereo (`naver/croco` ``stereoflow``): ``epe`` (avgerr) = mean |d_hat - d|, ``rmse``, ``bad@tau`` =
  % of pixels with |d_hat - d| > tau, over finite GT;
* KITTI 2015 ``d1`` (devkit / ``D1_metric``): % outliers with |err| > 3 px **and** |err| / |d| > 5 %.

Two reductions are accumulated at once: ``"pixel"`` pools all valid pixels of the dataset (KITTI leaderboard,
CroCo's ``StereoDatasetMetrics``), ``"image"`` averages per-image values (CroCo validation, SceneFlow EPE).
"""

from __future__ import annotations

import torch
from torch import Tensor
from torchmetrics import Metric

__all__ = ["StereoMetrics", "DEFAULT_BAD_THRESHOLDS"]

DEFAULT_BAD_THRESHOLDS = (0.5, 1.0, 2.0, 3.0, 4.0)
REDUCTIONS = ("image", "pixel")


def _tau_name(t: float) -> str:
    return f"bad{t:g}"


class StereoMetrics(Metric):
    """EPE, RMSE, bad-N (%) and KITTI D1 (%) over valid pixels.

    Args:
        reduction: ``"image"`` (mean of per-image values; images without valid pixels are skipped) or
            ``"pixel"`` (pooled over every valid pixel of every image).
        thresholds: bad-N thresholds in pixels (0.5, 1, 2, 3, 4).
        max_disparity: also ignore GT >= this (SceneFlow protocol: 192); None = no limit.
        d1_abs, d1_rel: D1 outlier rule ``err > d1_abs and err > d1_rel * |d|`` (3 px, 5 %).

    ``update(pred, target, mask=None)``: ``pred``/``target`` ``(B, 1, H, W)`` or ``(B, H, W)`` disparities,
    target +inf where invalid; ``mask`` optional bool of the same shape restricting the pixels (e.g.
    non-occluded). ``compute()`` -> ``{"epe", "rmse", "bad0.5", ..., "d1"}`` (bad/d1 in percent).
    """

    is_differentiable = False
    higher_is_better = False
    full_state_update = False

    def __init__(
        self,
        reduction: str = "image",
        thresholds: tuple[float, ...] | list[float] = DEFAULT_BAD_THRESHOLDS,
        max_disparity: float | None = None,
        d1_abs: float = 3.0,
        d1_rel: float = 0.05,
        **kwargs,
    ) -> None:
        super().__init__(**kwargs)
        if reduction not in REDUCTIONS:
            raise ValueError(f"reduction must be one of {REDUCTIONS}, got {reduction!r}")
        self.reduction = reduction
        self.thresholds = tuple(float(t) for t in thresholds)
        self.max_disparity = max_disparity
        self.d1_abs, self.d1_rel = d1_abs, d1_rel
        self.names = ["epe", "rmse", *(_tau_name(t) for t in self.thresholds), "d1"]
        zeros = torch.zeros(len(self.names), dtype=torch.float64)
        self.add_state("sums", default=zeros.clone(), dist_reduce_fx="sum")
        self.add_state("count", default=torch.zeros((), dtype=torch.float64), dist_reduce_fx="sum")

    def update(self, pred: Tensor, target: Tensor, mask: Tensor | None = None) -> None:
        if pred.ndim == 4:
            pred = pred[:, :1]
        if target.ndim == 3:
            target = target[:, None]
        if pred.ndim == 3:
            pred = pred[:, None]
        if pred.shape != target.shape:
            raise ValueError(f"StereoMetrics: pred {tuple(pred.shape)} and target {tuple(target.shape)} differ")
        pred = pred.detach().double().flatten(1)
        target = target.detach().double().flatten(1)
        valid = torch.isfinite(target)
        if self.max_disparity is not None:
            valid &= target.abs() < self.max_disparity
        if mask is not None:
            if mask.ndim == 3:
                mask = mask[:, None]
            valid &= mask.bool().flatten(1)
        t = torch.where(valid, target, 0.0)
        err = (pred - t).abs()
        err = torch.where(valid, err, 0.0)
        vf = valid.double()
        per_px = [err, err.pow(2)]
        per_px += [(err > tau).double() * vf * 100.0 for tau in self.thresholds]
        per_px.append(((err > self.d1_abs) & (err > self.d1_rel * t.abs())).double() * vf * 100.0)
        sums = torch.stack([x.sum(1) for x in per_px], dim=1)  # (B, M)
        n = vf.sum(1)
        if self.reduction == "pixel":
            self.sums = self.sums + sums.sum(0)
            self.count = self.count + n.sum()
            return
        keep = n > 0
        if not keep.any():
            return
        per_img = sums[keep] / n[keep, None]
        per_img[:, 1] = per_img[:, 1].sqrt()  # per-image RMSE
        self.sums = self.sums + per_img.sum(0)
        self.count = self.count + keep.sum()

    def compute(self) -> dict[str, Tensor]:
        """The metrics; NaN when no valid pixel was seen (an empty mask scores nothing, not a perfect 0)."""
        vals = self.sums / self.count.clamp(min=1)
        if self.reduction == "pixel":
            vals = vals.clone()
            vals[1] = vals[1].sqrt()
        vals = torch.where(self.count > 0, vals, torch.full_like(vals, float("nan")))
        return {name: vals[i].float() for i, name in enumerate(self.names)}
