"""Metrics that torchmetrics lacks, as ``torchmetrics.Metric`` subclasses (states sum across DDP ranks).

Segmentation uses torchmetrics' own ``MulticlassJaccardIndex``; only depth needs a class here.
"""

from __future__ import annotations

import torch
from torch import Tensor
from torchmetrics import Metric

DEPTH_METRICS = ("abs_rel", "sq_rel", "rmse", "rmse_log", "log10", "delta1", "delta2", "delta3")


class DepthMetrics(Metric):
    """Monocular depth metrics of Eigen et al. (2014), as reported on NYU-v2 and KITTI.

    Each metric is computed per image over its valid pixels and then averaged over images (the
    protocol of BTS / AdaBins / DPT evaluation scripts). Valid pixels have finite ground truth in
    ``(min_depth, max_depth]``; predictions are clamped to the same range before scoring.

    ``compute()`` returns a dict: ``abs_rel`` = mean |d̂−d|/d, ``sq_rel`` = mean (d̂−d)²/d,
    ``rmse`` = sqrt(mean (d̂−d)²), ``rmse_log`` = sqrt(mean (log d̂ − log d)²),
    ``log10`` = mean |log10 d̂ − log10 d|, ``delta{k}`` = fraction with max(d̂/d, d/d̂) < 1.25^k.
    """

    is_differentiable = False
    higher_is_better = False
    full_state_update = False

    def __init__(self, min_depth: float = 1e-3, max_depth: float | None = None, **kwargs) -> None:
        super().__init__(**kwargs)
        self.min_depth = min_depth
        self.max_depth = max_depth
        for name in DEPTH_METRICS:
            self.add_state(name, default=torch.zeros((), dtype=torch.float64), dist_reduce_fx="sum")
        self.add_state("num_images", default=torch.zeros((), dtype=torch.long), dist_reduce_fx="sum")

    def update(self, pred: Tensor, target: Tensor) -> None:
        """``pred`` and ``target``: (B, 1, H, W) or (B, H, W) depths; invalid target = +inf or <= min_depth."""
        if pred.shape != target.shape:
            raise ValueError(f"DepthMetrics: pred {tuple(pred.shape)} and target {tuple(target.shape)} differ")
        pred = pred.detach().double().flatten(1)
        target = target.detach().double().flatten(1)
        hi = self.max_depth if self.max_depth is not None else float("inf")
        valid = torch.isfinite(target) & (target > self.min_depth) & (target <= hi)
        pred = pred.clamp(self.min_depth, hi if self.max_depth is not None else None)
        n = valid.sum(1)
        keep = n > 0  # images without any valid pixel do not count: weighted out on the device, no sync
        t = torch.where(valid, target, torch.ones_like(target))
        p = torch.where(valid, pred, torch.ones_like(pred))
        diff = p - t

        def mean(x: Tensor) -> Tensor:  # per-image mean over valid pixels (0 for images without any)
            return (x * valid).sum(1) / n.clamp(min=1).double()

        ratio = torch.maximum(p / t, t / p)
        per_image = {
            "abs_rel": mean(diff.abs() / t),
            "sq_rel": mean(diff.pow(2) / t),
            "rmse": mean(diff.pow(2)).sqrt(),
            "rmse_log": mean((p.log() - t.log()).pow(2)).sqrt(),
            "log10": mean((p.log10() - t.log10()).abs()),
            "delta1": mean((ratio < 1.25).double()),
            "delta2": mean((ratio < 1.25**2).double()),
            "delta3": mean((ratio < 1.25**3).double()),
        }
        for name, v in per_image.items():
            setattr(self, name, getattr(self, name) + torch.where(keep, v, torch.zeros_like(v)).sum())
        self.num_images += keep.sum()

    def compute(self) -> dict[str, Tensor]:
        denom = self.num_images.clamp(min=1).double()
        return {name: (getattr(self, name) / denom).float() for name in DEPTH_METRICS}
