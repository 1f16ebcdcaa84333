"""Multi-task losses with the standard task weights of MTI-Net / ATRC / InvPT / MTLoRA / TADFormer.

* ``semseg``, ``human_parts``: cross-entropy, label 255 ignored (an all-ignored batch gives 0, not NaN).
* ``sal``: HED-style balanced binary cross-entropy, ``w = #neg / #total`` of the batch; 255 pixels are left out
  (the official ``BalancedCrossEntropyLoss`` of MTI-Net/MTLoRA counts them as salient; with the default ``fill="zero"`` of
  the augmentation no 255 reaches the target and the two are equal: ``tests/mtl/test_golden_mtl_metrics.py``).
* ``edge``: balanced binary cross-entropy with a fixed positive weight 0.95.
* ``normals``: L1 between the L2-normalised prediction and the ground truth over valid (non-zero) pixels.
* ``depth``: L1 over valid (finite, positive) pixels.

The balanced BCE follows MTI-Net's ``BalancedCrossEntropyLoss`` (sum of the weighted positive and negative
terms divided by the number of labelled pixels); it is computed from logits for numerical stability.
Every loss works without a host sync (no data-dependent indexing) and in fp32.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from vitlab.core.data import IGNORE_INDEX

__all__ = ["TASK_WEIGHTS", "MultiTaskLoss", "balanced_bce", "depth_l1", "normals_l1", "task_loss", "masked_ce"]

#: L = Σ_t w_t L_t (identical across MTI-Net, ATRC, InvPT, MTLoRA and TADFormer)
TASK_WEIGHTS = {"semseg": 1.0, "human_parts": 2.0, "sal": 5.0, "normals": 10.0, "edge": 50.0, "depth": 1.0}


def masked_ce(logits: Tensor, target: Tensor, ignore_index: int = IGNORE_INDEX) -> Tensor:
    """Mean cross-entropy over labelled pixels; 0 (with a graph) when every pixel is ignored."""
    per_pixel = F.cross_entropy(logits.float(), target, ignore_index=ignore_index, reduction="none")
    valid = (target != ignore_index).sum()
    return per_pixel.sum() / valid.clamp(min=1)


def balanced_bce(logits: Tensor, target: Tensor, pos_weight: float | None = None,
                 ignore_index: int = IGNORE_INDEX) -> Tensor:
    """``(w Σ_pos BCE + (1-w) Σ_neg BCE) / #labelled``; ``w = #neg/#labelled`` unless ``pos_weight`` is given."""
    logits, target = logits.float(), target.float()
    valid = (target != ignore_index).float()
    pos = (target > 0.5).float() * valid
    neg = valid - pos
    n = valid.sum().clamp(min=1)
    w = neg.sum() / n if pos_weight is None else float(pos_weight)
    loss_pos = (F.softplus(-logits) * pos).sum()  # -log σ(x)
    loss_neg = (F.softplus(logits) * neg).sum()  # -log(1-σ(x))
    return (w * loss_pos + (1 - w) * loss_neg) / n


def normals_l1(pred: Tensor, target: Tensor) -> Tensor:
    """L1 between unit-normalised prediction and ground truth (B, 3, H, W); zero-norm targets are ignored."""
    pred, target = pred.float(), target.float()
    valid = (target.abs().sum(1, keepdim=True) > 0).float()
    diff = (F.normalize(pred, dim=1) - target).abs() * valid
    return diff.sum() / (3 * valid.sum()).clamp(min=1)


def depth_l1(pred: Tensor, target: Tensor) -> Tensor:
    """L1 over valid depth (finite and > 0); invalid pixels are +inf in vitlab data."""
    pred, target = pred.float(), target.float()
    valid = torch.isfinite(target) & (target > 0)
    diff = torch.where(valid, pred - torch.where(valid, target, torch.zeros_like(target)), torch.zeros_like(pred))
    return diff.abs().sum() / valid.sum().clamp(min=1)


def task_loss(task: str, out: Tensor, target: Tensor, edge_pos_weight: float = 0.95) -> Tensor:
    if task in ("semseg", "human_parts"):
        return masked_ce(out, target)
    if task == "sal":
        return balanced_bce(out, target)
    if task == "edge":
        return balanced_bce(out, target, pos_weight=edge_pos_weight)
    if task == "normals":
        return normals_l1(out, target)
    if task == "depth":
        return depth_l1(out, target)
    raise ValueError(f"unknown task {task!r}; expected one of {sorted(TASK_WEIGHTS)}")


class MultiTaskLoss(nn.Module):
    """``Σ_t w_t L_t`` over ``tasks``; returns ``(total, {task: L_t})``.

    Args:
        tasks: task names (``semseg``, ``human_parts``, ``sal``, ``normals``, ``edge``, ``depth``).
        weights: per-task weights; missing tasks take :data:`TASK_WEIGHTS`.
        edge_pos_weight: positive weight of the edge BCE (0.95).
    """

    def __init__(self, tasks: list[str], weights: dict[str, float] | None = None, edge_pos_weight: float = 0.95) -> None:
        super().__init__()
        unknown = [t for t in tasks if t not in TASK_WEIGHTS]
        if unknown:
            raise ValueError(f"MultiTaskLoss: unknown tasks {unknown}; expected a subset of {sorted(TASK_WEIGHTS)}")
        self.tasks = list(tasks)
        self.weights = {t: float((weights or {}).get(t, TASK_WEIGHTS[t])) for t in tasks}
        self.edge_pos_weight = edge_pos_weight

    def forward(self, outputs: dict[str, Tensor], batch: dict[str, Tensor]) -> tuple[Tensor, dict[str, Tensor]]:
        losses = {t: task_loss(t, outputs[t], batch[t], self.edge_pos_weight) for t in self.tasks}
        total = sum(self.weights[t] * losses[t] for t in self.tasks)
        return total, losses
