"""Dataset-level multi-task metrics (torchmetrics, DDP-synced) and the multi-task performance Δm.

Protocols follow MTI-Net's evaluation code (`SimonVandenhende/Multi-Task-Learning-PyTorch`) as used by MTLoRA
and TADFormer; the saliency maxF is InvPT/ATRC's.

* :class:`MeanIoU`: TP/FP/FN summed over the split, IoU per class, mean over all classes (×100).
* :class:`SaliencyMetric`: ``maxIoU`` = max over 15 thresholds ``linspace(0.2, 0.9)`` of the mean per-image
  Jaccard (the MTLoRA/TADFormer "Sal mIoU"; an image with empty prediction and ground truth scores 1), and
  ``maxF`` = max over thresholds 0.05:0.05:0.95 of the dataset-level F-measure with β² = 0.3.
* :class:`NormalsMetric`: angular error in degrees over valid pixels: ``mean`` (the "rmse" field of
  MTLoRA/TADFormer is also this mean; ground truth not renormalised, the official v1 meter, by default),
  ``median`` (from a 0.01° histogram), ``rmse`` and % below 11.25/22.5/30°.
* :class:`DepthRMSE`: RMSE over every valid pixel of the split (pixel-pooled, not a mean of per-image RMSEs).
* :class:`EdgeLossProxy`: balanced BCE (pos_weight 0.95) averaged over images, the number MTI-Net's and
  MTLoRA's ``EdgeMeter`` report; the real odsF needs the SEISM toolbox on PNGs from :func:`save_edge_pngs`.
* :func:`delta_m`: ``(100/T) Σ_t (-1)^{l_t} (M_t - M_{b,t}) / M_{b,t}`` against a single-task reference.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor
from torchmetrics import Metric

from vitlab.core.data import IGNORE_INDEX
from vitlab.mtl.losses import balanced_bce

__all__ = [
    "LOWER_IS_BETTER",
    "PRIMARY_METRIC",
    "SINGLE_TASK_REFERENCES",
    "DepthRMSE",
    "EdgeLossProxy",
    "MeanIoU",
    "NormalsMetric",
    "SaliencyMetric",
    "delta_m",
    "resolve_reference",
    "save_edge_pngs",
    "task_metric",
]

#: metric entering Δm per task (calculate_multi_task_performance: mIoU, sal mIoU, normals mean, depth rmse, odsF)
PRIMARY_METRIC = {"semseg": "mIoU", "human_parts": "mIoU", "sal": "maxIoU", "normals": "mean", "depth": "rmse",
                  "edge": "odsF"}
LOWER_IS_BETTER = {"normals", "depth"}

#: Single-task references (full fine-tuning, same backbone). MTLoRA's Swin-T at 448 px on PASCAL-Context
#: (MTLoRA, CVPR 2024, Table 1; TADFormer's configs hard-code it as SINGLE_TASK_DICT).
SINGLE_TASK_REFERENCES: dict[str, dict[str, float]] = {
    "mtlora_swin_t_pascal": {"semseg": 67.21, "human_parts": 61.93, "sal": 62.35, "normals": 17.97},
}


def resolve_reference(reference: str | Mapping[str, float] | None) -> dict[str, float] | None:
    """A named reference from :data:`SINGLE_TASK_REFERENCES`, a ``{task: value}`` dict, or None."""
    if reference is None:
        return None
    if isinstance(reference, str):
        if reference not in SINGLE_TASK_REFERENCES:
            raise ValueError(f"unknown single-task reference {reference!r}; known: {sorted(SINGLE_TASK_REFERENCES)}")
        return dict(SINGLE_TASK_REFERENCES[reference])
    return {str(k): float(v) for k, v in reference.items()}


def delta_m(values: Mapping[str, float], reference: Mapping[str, float],
            lower_is_better: set[str] | frozenset[str] = frozenset(LOWER_IS_BETTER)) -> float:
    """Multi-task performance Δm (%) over the tasks present in both ``values`` and ``reference``."""
    tasks = [t for t in reference if t in values]
    if not tasks:
        raise ValueError(f"delta_m: no task in common between {sorted(values)} and reference {sorted(reference)}")
    total = 0.0
    for t in tasks:
        sign = -1.0 if t in lower_is_better else 1.0
        total += sign * (float(values[t]) - reference[t]) / reference[t]
    return 100.0 * total / len(tasks)


class MeanIoU(Metric):
    """mIoU (×100) from split-level TP/FP/FN; pixels labelled ``ignore_index`` are left out."""

    full_state_update = False

    def __init__(self, num_classes: int, ignore_index: int = IGNORE_INDEX) -> None:
        super().__init__()
        self.num_classes = num_classes
        self.ignore_index = ignore_index
        for name in ("tp", "fp", "fn"):
            self.add_state(name, torch.zeros(num_classes, dtype=torch.float64), dist_reduce_fx="sum")

    def update(self, logits_or_labels: Tensor, target: Tensor) -> None:
        pred = logits_or_labels.argmax(1) if logits_or_labels.dim() == target.dim() + 1 else logits_or_labels
        valid = target != self.ignore_index
        n = self.num_classes
        idx = torch.where(valid, target * n + pred, torch.full_like(target, n * n))
        cm = torch.bincount(idx.flatten(), minlength=n * n + 1)[: n * n].view(n, n).double()
        tp = cm.diagonal()
        self.tp += tp
        self.fp += cm.sum(0) - tp
        self.fn += cm.sum(1) - tp

    def compute(self) -> dict[str, Tensor]:
        iou = self.tp / (self.tp + self.fp + self.fn).clamp(min=1e-8)
        return {"mIoU": 100.0 * iou.mean().float()}


class SaliencyMetric(Metric):
    """Saliency ``maxIoU`` (MTI-Net/MTLoRA protocol) and dataset-level ``maxF`` (β² = 0.3, InvPT/ATRC).

    ``update(logits, target)`` takes logits (sigmoid applied here once) and binary targets (B, 1, H, W);
    255 in the target is ignored.
    """

    full_state_update = False

    def __init__(self, beta2: float = 0.3, ignore_index: int = IGNORE_INDEX) -> None:
        super().__init__()
        self.beta2 = beta2
        self.ignore_index = ignore_index
        self.register_buffer("iou_thresholds", torch.linspace(0.2, 0.9, 15), persistent=False)
        self.register_buffer("f_thresholds", torch.arange(1, 20, dtype=torch.float32) * 0.05, persistent=False)
        self.add_state("jaccard_sum", torch.zeros(15, dtype=torch.float64), dist_reduce_fx="sum")
        self.add_state("images", torch.zeros((), dtype=torch.float64), dist_reduce_fx="sum")
        for name in ("tp", "fp", "fn"):
            self.add_state(name, torch.zeros(19, dtype=torch.float64), dist_reduce_fx="sum")

    def update(self, logits: Tensor, target: Tensor) -> None:
        prob = torch.sigmoid(logits.float()).flatten(1)  # (B, HW)
        tgt = target.flatten(1)
        valid = (tgt != self.ignore_index)
        gt = (tgt > 0.5) & valid
        pred = (prob[:, None] > self.iou_thresholds[None, :, None]) & valid[:, None]  # (B, 15, HW)
        inter = (pred & gt[:, None]).sum(-1).double()
        union = (pred | gt[:, None]).sum(-1).double()
        jac = torch.where(union > 0, inter / union.clamp(min=1), torch.ones_like(union))
        self.jaccard_sum += jac.sum(0)
        self.images += prob.shape[0]
        predf = (prob[:, None] > self.f_thresholds[None, :, None]) & valid[:, None]  # (B, 19, HW)
        tp = (predf & gt[:, None]).sum((0, 2)).double()
        self.tp += tp
        self.fp += predf.sum((0, 2)).double() - tp
        self.fn += gt.sum().double() - tp

    def compute(self) -> dict[str, Tensor]:
        miou = self.jaccard_sum / self.images.clamp(min=1)
        prec = self.tp / (self.tp + self.fp).clamp(min=1e-8)
        rec = self.tp / (self.tp + self.fn).clamp(min=1e-8)
        f = (1 + self.beta2) * prec * rec / (self.beta2 * prec + rec).clamp(min=1e-8)
        return {"maxIoU": 100.0 * miou.max().float(), "maxF": 100.0 * f.max().float()}


class NormalsMetric(Metric):
    """Angular error (degrees) of predicted normals over pixels with a non-zero ground-truth normal.

    The prediction is L2-normalised. ``normalize_target=False`` (default) takes the ground truth as it comes,
    ``acos(clamp(<p̂, g>))``: the official ``NormalsMeterV1`` of MTI-Net/MTLoRA/TADFormer, whose ``mean`` is the
    number their tables report (under "mean" or "rmse"). ``True`` renormalises the ground truth first, the
    official ``mean_v2`` (``NormalsMeterV2``); the two differ where the ground truth is not unit length
    (8-bit PNG quantisation: 25.300 vs 25.276 on the same input).
    """

    full_state_update = False

    def __init__(self, bin_width: float = 0.01, normalize_target: bool = False) -> None:
        super().__init__()
        self.bin_width = bin_width
        self.normalize_target = bool(normalize_target)
        self.num_bins = int(math.ceil(180.0 / bin_width))
        self.add_state("hist", torch.zeros(self.num_bins, dtype=torch.float64), dist_reduce_fx="sum")
        self.add_state("sum_deg", torch.zeros((), dtype=torch.float64), dist_reduce_fx="sum")
        self.add_state("sum_sq", torch.zeros((), dtype=torch.float64), dist_reduce_fx="sum")
        self.add_state("count", torch.zeros((), dtype=torch.float64), dist_reduce_fx="sum")
        self.add_state("below", torch.zeros(3, dtype=torch.float64), dist_reduce_fx="sum")

    def update(self, pred: Tensor, target: Tensor) -> None:
        pred, target = F.normalize(pred.float(), dim=1), target.float()
        valid = (target.abs().sum(1) > 0).double()
        gt = F.normalize(target, dim=1) if self.normalize_target else target
        cos = (pred * gt).sum(1).clamp(-1.0, 1.0)
        deg = torch.rad2deg(torch.acos(cos)).double()
        self.sum_deg += (deg * valid).sum()
        self.sum_sq += (deg.pow(2) * valid).sum()
        self.count += valid.sum()
        for i, thr in enumerate((11.25, 22.5, 30.0)):
            self.below[i] += ((deg < thr).double() * valid).sum()
        idx = (deg / self.bin_width).long().clamp(max=self.num_bins - 1)
        self.hist += torch.bincount(idx.flatten(), weights=valid.flatten(), minlength=self.num_bins)

    def compute(self) -> dict[str, Tensor]:
        n = self.count.clamp(min=1)
        cdf = torch.cumsum(self.hist, 0)
        med_bin = torch.searchsorted(cdf, 0.5 * self.count)
        return {
            "mean": (self.sum_deg / n).float(),
            "median": ((med_bin.double() + 0.5) * self.bin_width).float(),
            "rmse": torch.sqrt(self.sum_sq / n).float(),
            "11.25": (100 * self.below[0] / n).float(),
            "22.5": (100 * self.below[1] / n).float(),
            "30": (100 * self.below[2] / n).float(),
        }


class DepthRMSE(Metric):
    """RMSE (metres) over all valid pixels of the split; invalid ground truth is +inf or <= 0."""

    full_state_update = False

    def __init__(self) -> None:
        super().__init__()
        self.add_state("sum_sq", torch.zeros((), dtype=torch.float64), dist_reduce_fx="sum")
        self.add_state("count", torch.zeros((), dtype=torch.float64), dist_reduce_fx="sum")

    def update(self, pred: Tensor, target: Tensor) -> None:
        pred, target = pred.float(), target.float()
        valid = torch.isfinite(target) & (target > 0)
        err = torch.where(valid, pred - torch.where(valid, target, torch.zeros_like(target)), torch.zeros_like(pred))
        self.sum_sq += err.double().pow(2).sum()
        self.count += valid.sum()

    def compute(self) -> dict[str, Tensor]:
        return {"rmse": torch.sqrt(self.sum_sq / self.count.clamp(min=1)).float()}


class EdgeLossProxy(Metric):
    """Per-image balanced BCE (pos_weight 0.95) averaged over the split: MTI-Net's edge proxy, not odsF."""

    full_state_update = False

    def __init__(self, pos_weight: float = 0.95) -> None:
        super().__init__()
        self.pos_weight = pos_weight
        self.add_state("total", torch.zeros((), dtype=torch.float64), dist_reduce_fx="sum")
        self.add_state("images", torch.zeros((), dtype=torch.float64), dist_reduce_fx="sum")

    def update(self, logits: Tensor, target: Tensor) -> None:
        for i in range(logits.shape[0]):
            self.total += balanced_bce(logits[i:i + 1], target[i:i + 1], pos_weight=self.pos_weight).double()
        self.images += logits.shape[0]

    def compute(self) -> dict[str, Tensor]:
        return {"loss": (self.total / self.images.clamp(min=1)).float()}


def task_metric(task: str, num_outputs: int) -> Metric:
    if task in ("semseg", "human_parts"):
        return MeanIoU(num_outputs)
    if task == "sal":
        return SaliencyMetric()
    if task == "normals":
        return NormalsMetric()
    if task == "depth":
        return DepthRMSE()
    if task == "edge":
        return EdgeLossProxy()
    raise ValueError(f"no metric for task {task!r}")


def save_edge_pngs(logits: Tensor, names: Sequence[str], directory: str | os.PathLike) -> list[str]:
    """Edge probabilities as 8-bit PNGs (``<name>.png``, 255 = edge) for the SEISM odsF evaluation."""
    from PIL import Image

    os.makedirs(directory, exist_ok=True)
    prob = torch.sigmoid(logits.detach().float()).cpu().numpy()
    paths = []
    for p, name in zip(prob, names):
        path = os.path.join(directory, f"{name}.png")
        Image.fromarray(np.round(255 * p.reshape(p.shape[-2:])).astype(np.uint8)).save(path)
        paths.append(path)
    return paths
