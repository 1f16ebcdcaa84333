"""Dataset-level multi-task metrics (torchmetrics, DDP-synced) and the multi-task performance Δm.

Protocols follow MTI-Net's evaluation code (`SimonVandenhende/Multi-Task-Learning-PyTorch`) as used by MTLoRA
and TADFormer; the saliency maxF is InvPT/ATRC's.

* :class:`MeanIoU`: TP/FP/FN summed over the split, IoU per class, mean over all classes (×100).
* :class:`SaliencyMetric`: ``maxIoU`` = max over 15 thresholds ``linspace(0.2, 0.9)`` of the mean per-image
  Jaccard (the MTLoRA/TADFormer "Sal mIoU"; an image with empty prediction and ground truth scores 1);
  ``maxF`` = the MTI-Net meter's F1 of the mean per-image precision and recall at the same thresholds (MTI-Net's
  "Sal maxF"); ``maxF_beta`` = the dataset-level F-measure with β² = 0.3 at 0.05:0.05:0.95 (InvPT/ATRC, MTLoRA's
  "Beta maxF"; by default with their second sigmoid).
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
    """Saliency ``maxIoU``, ``maxF`` and ``maxF_beta``: the three quantities the MTL papers' code reports.

    Which table uses which (all three follow scale-lab/MTLoRA@333a375 ``evaluation/eval_sal*.py``, which merges
    MTI-Net's and InvPT's meters; measured equal in ``tests/mtl/test_golden_mtl_metrics.py``):

    * ``maxIoU``: MTLoRA's and TADFormer's "Sal mIoU" (the primary metric and the one in Δm): per image and
      threshold ``p > t`` for ``t`` in ``linspace(0.2, 0.9, 15)``, the Jaccard index (1 when prediction and ground
      truth are both empty), averaged over images, max over thresholds.
    * ``maxF``: MTI-Net's "Sal maxF" (SCA_MTL's meter is MTI-Net's): per image precision ``tp / (tp + fp + ε)``
      and recall ``tp / (tp + fn + ε)`` at the same thresholds, averaged over images, then ``2PR / (P + R + ε)``
      (β = 1), max over thresholds; ε = 1e-12.
    * ``maxF_beta``: InvPT's / ATRC's "maxF" (MTLoRA prints it as "Beta maxF"): TP, predicted and actual positives
      summed over the split at ``p >= t`` for ``t`` in ``arange(0.05, 1, 0.05)``, F with ``beta2`` (0.3), max over
      thresholds. Their released code applies the sigmoid to probabilities that already went through one, so the
      published numbers are of ``sigmoid(sigmoid(logit))``: ``beta_sigmoid="twice"`` (default, comparable with those
      tables) reproduces that; ``"once"`` is the clean quantity.

    ``update(logits, target)`` takes logits (B, 1, H, W) and binary targets; target ``ignore_index`` (255) pixels are
    left out of all three (MTI-Net's meter would count them as salient; PASCAL's evaluation targets hold no 255, so
    the numbers agree there).
    """

    full_state_update = False
    N_IOU = 15
    EPS = 1e-12

    def __init__(self, beta2: float = 0.3, ignore_index: int = IGNORE_INDEX, beta_sigmoid: str = "twice") -> None:
        super().__init__()
        if beta_sigmoid not in ("twice", "once"):
            raise ValueError(f"SaliencyMetric: beta_sigmoid: expected 'twice' or 'once', got {beta_sigmoid!r}")
        self.beta2, self.beta_sigmoid = beta2, beta_sigmoid
        self.ignore_index = ignore_index
        self.register_buffer("iou_thresholds", torch.from_numpy(np.linspace(0.2, 0.9, self.N_IOU)).float(),
                             persistent=False)
        self.register_buffer("f_thresholds", torch.arange(0.05, 1, 0.05), persistent=False)  # MTLoRA's float32 law
        for name in ("jaccard_sum", "precision_sum", "recall_sum"):
            self.add_state(name, torch.zeros(self.N_IOU, dtype=torch.float64), dist_reduce_fx="sum")
        self.add_state("images", torch.zeros((), dtype=torch.float64), dist_reduce_fx="sum")
        n = len(self.f_thresholds)
        for name in ("tp", "predicted", "actual"):
            self.add_state(name, torch.zeros(n, dtype=torch.float64), dist_reduce_fx="sum")

    def update(self, logits: Tensor, target: Tensor) -> None:
        prob = torch.sigmoid(logits.float()).flatten(1)  # (B, HW)
        tgt = target.flatten(1)
        valid = tgt != self.ignore_index
        gt = (tgt > 0.5) & valid
        # per image (MTI-Net's meter): Jaccard, precision and recall at the 15 thresholds
        pred = (prob[:, None] > self.iou_thresholds[None, :, None]) & valid[:, None]  # (B, 15, HW)
        inter = (pred & gt[:, None]).sum(-1).double()
        union = (pred | gt[:, None]).sum(-1).double()
        npred = pred.sum(-1).double()
        ngt = gt.sum(-1, keepdim=True).double()
        self.jaccard_sum += torch.where(union > 0, inter / union.clamp(min=1), torch.ones_like(union)).sum(0)
        self.precision_sum += (inter / (npred + self.EPS)).sum(0)
        self.recall_sum += (inter / (ngt + self.EPS)).sum(0)
        self.images += prob.shape[0]
        # dataset level (InvPT's meter)
        pf = torch.sigmoid(prob) if self.beta_sigmoid == "twice" else prob
        predf = (pf[:, None] >= self.f_thresholds[None, :, None]) & valid[:, None]  # (B, 19, HW)
        self.tp += (predf & gt[:, None]).sum((0, 2)).double()
        self.predicted += predf.sum((0, 2)).double()
        self.actual += gt.sum().double()

    def compute(self) -> dict[str, Tensor]:
        n = self.images.clamp(min=1)
        miou = self.jaccard_sum / n
        p, r = self.precision_sum / n, self.recall_sum / n
        f1 = 2 * p * r / (p + r + self.EPS)
        prec, rec = self.tp / self.predicted, self.tp / self.actual
        fb = (1 + self.beta2) * prec * rec / (self.beta2 * prec + rec)
        fb = torch.nan_to_num(fb, nan=0.0)  # a threshold with no predicted positives scores 0 (as the meter)
        return {"maxIoU": 100.0 * miou.max().float(), "maxF": 100.0 * f1.max().float(),
                "maxF_beta": 100.0 * fb.max().float()}


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
