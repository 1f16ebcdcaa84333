"""Dataset-level segmentation IoU with class subsets (mIoU19 / mIoU16 / mIoU13), as a torchmetrics Metric."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor
from torchmetrics import Metric

from vitlab.core.data import IGNORE_INDEX

__all__ = ["SubsetMeanIoU"]


class SubsetMeanIoU(Metric):
    """Per-class IoU accumulated over the whole evaluation set (mmseg ``total_intersect_and_union``).

    ``IoU_c = sum TP_c / sum (TP_c + FP_c + FN_c)`` over pixels whose label is not ``ignore_index``; a class
    with an empty union is NaN and left out of the means. ``subsets`` maps a name to class ids (e.g.
    ``{"mIoU16": SYNTHIA_CLASSES}``); ``compute()`` returns ``{"mIoU": mean over all classes, name: mean
    over the subset, ...}`` and, with ``per_class=True``, ``IoU/<class name or id>`` too. The confusion
    matrix state is summed over DDP ranks.
    """

    is_differentiable = False
    higher_is_better = True
    full_state_update = False

    def __init__(self, num_classes: int, subsets: dict[str, Sequence[int]] | None = None,
                 ignore_index: int = IGNORE_INDEX, class_names: Sequence[str] | None = None,
                 per_class: bool = False, **kwargs) -> None:
        super().__init__(**kwargs)
        self.num_classes = num_classes
        self.subsets = {k: [int(c) for c in v] for k, v in (subsets or {}).items()}
        self.ignore_index = ignore_index
        self.class_names = list(class_names) if class_names else [str(c) for c in range(num_classes)]
        self.per_class = per_class
        self.add_state("confmat", default=torch.zeros(num_classes, num_classes, dtype=torch.long),
                       dist_reduce_fx="sum")

    def update(self, pred: Tensor, target: Tensor) -> None:
        if pred.shape != target.shape:
            raise ValueError(f"SubsetMeanIoU: pred {tuple(pred.shape)} and target {tuple(target.shape)} differ")
        valid = (target != self.ignore_index) & (target >= 0) & (target < self.num_classes)
        idx = torch.where(valid, target * self.num_classes + pred.clamp(0, self.num_classes - 1), 0)
        counts = torch.bincount(idx.flatten(), weights=valid.flatten().double(), minlength=self.num_classes ** 2)
        self.confmat += counts.round().long().view(self.num_classes, self.num_classes)

    def iou(self) -> Tensor:
        cm = self.confmat.double()
        tp = cm.diag()
        union = cm.sum(0) + cm.sum(1) - tp
        return torch.where(union > 0, tp / union.clamp(min=1), torch.full_like(tp, float("nan")))

    def compute(self) -> dict[str, Tensor]:
        iou = self.iou()
        out = {"mIoU": iou.nanmean().float()}
        for name, classes in self.subsets.items():
            out[name] = iou[classes].nanmean().float()
        if self.per_class:
            out.update({f"IoU/{n}": v.float() for n, v in zip(self.class_names, iou, strict=True)})
        return out
