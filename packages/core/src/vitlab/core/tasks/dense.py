"""Dense prediction on a ViT: semantic segmentation and monocular depth.

Both share :class:`DenseTask`: intermediate backbone features (``forward_intermediates``) feed a head
chosen by name — ``"dpt"`` (DPT, Ranftl et al. 2021, the CroCo-Stereo head), ``"linear"`` (SETR-naive:
1x1 conv on the last map + bilinear upsampling, the usual frozen-feature probe) or ``"pup"`` (SETR
progressive upsampling).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torchmetrics import Metric, MetricCollection
from torchmetrics.classification import MulticlassAccuracy, MulticlassJaccardIndex

from vitlab.core.data.constants import IGNORE_INDEX
from vitlab.core.heads import DPTHead, LinearHead, ProgressiveUpsamplingHead
from vitlab.core.metrics import DepthMetrics
from vitlab.core.tasks.base import BackboneTask
from vitlab.core.tuner import Tuner
from vitlab.core.visualize import colorize_depth, colorize_labels, panel, to_uint8_image

HEADS = ("dpt", "linear", "pup")


def build_head(name: str, backbone: nn.Module, out_channels: int, **kwargs: Any) -> nn.Module:
    """A dense head sized for ``backbone`` (its ``embed_dim``, ``patch_size`` and ``out_indices``)."""
    dim = int(getattr(backbone, "head_in_dim", backbone.embed_dim))  # hierarchical backbones (Swin): last map width
    if name == "dpt":
        n = len(backbone.out_indices)
        return DPTHead([dim] * n, out_channels, patch_size=int(backbone.patch_size), **kwargs)
    if name == "linear":
        return LinearHead(dim, out_channels, **kwargs)
    if name == "pup":
        stride = int(getattr(backbone, "head_stride", backbone.patch_size))
        return ProgressiveUpsamplingHead(dim, out_channels, patch_size=stride, **kwargs)
    raise ValueError(f"head must be one of {HEADS}, got {name!r}")


class DenseTask(BackboneTask):
    """Backbone features → dense head → (B, C, H, W) at the input resolution.

    Args:
        backbone, tuner, freeze_backbone: see :class:`BackboneTask`.
        head: ``"dpt"``, ``"linear"`` or ``"pup"``.
        head_kwargs: extra arguments of the head class (e.g. ``{feature_dim: 128}`` for DPT).
        **kwargs: optimizer and schedule options of :class:`VitlabModule`.
    """

    default_writer = "vitlab.core.writers.DensePredictionWriter"

    out_channels: int

    def __init__(self, backbone: nn.Module, out_channels: int, tuner: Tuner | None = None,
                 freeze_backbone: bool = False, head: str = "dpt", head_kwargs: dict[str, Any] | None = None,
                 **kwargs) -> None:
        super().__init__(backbone=backbone, tuner=tuner, freeze_backbone=freeze_backbone, **kwargs)
        self.head_name = head
        self.head = build_head(head, self.backbone, out_channels, **(head_kwargs or {}))

    def forward(self, image: Tensor) -> Tensor:
        feats = self.backbone.forward_intermediates(image)
        return self.head(feats, image_size=image.shape[-2:])

    def validation_step(self, batch: dict[str, Tensor], batch_idx: int) -> Tensor:
        return self._eval_step(batch, self.val_metrics, "val")

    def test_step(self, batch: dict[str, Tensor], batch_idx: int) -> Tensor:
        return self._eval_step(batch, self.test_metrics, "test")

    def training_step(self, batch: dict[str, Tensor], batch_idx: int) -> Tensor:
        loss = self.loss(self(batch["image"]), batch)
        self.log("train/loss", loss, prog_bar=True)
        return loss

    def _eval_step(self, batch: dict[str, Tensor], metrics: Metric | MetricCollection, stage: str) -> Tensor:
        out = self(batch["image"])
        self.log(f"{stage}/loss", self.loss(out, batch), sync_dist=True)
        self.update_metrics(metrics, out, batch)
        return out

    def on_validation_epoch_end(self) -> None:
        self._log_metrics(self.val_metrics, "val")

    def on_test_epoch_end(self) -> None:
        self._log_metrics(self.test_metrics, "test")

    def _log_metrics(self, metrics: Metric | MetricCollection, stage: str) -> None:
        """Log a collection (already prefixed) or a metric returning a dict of named values."""
        values = metrics.compute()
        if not isinstance(metrics, MetricCollection):
            values = {f"{stage}/{k}": v for k, v in values.items()}
        self.log_dict(values, prog_bar=stage == "val")
        metrics.reset()

    def loss(self, out: Tensor, batch: dict[str, Tensor]) -> Tensor:
        raise NotImplementedError

    def update_metrics(self, metrics: Metric | MetricCollection, out: Tensor, batch: dict[str, Tensor]) -> None:
        raise NotImplementedError


class SemanticSegmentation(DenseTask):
    """Per-pixel classification with cross-entropy; reports mIoU and pixel accuracy.

    Args:
        backbone, tuner, freeze_backbone, head, head_kwargs: see :class:`DenseTask`.
        num_classes: number of classes; label ``ignore_index`` is left out of loss and metrics.
        ignore_index: label of unannotated pixels (255, the Cityscapes/ADE20K convention).
        **kwargs: optimizer and schedule options of :class:`VitlabModule`.

    Batches: ``image`` (B, 3, H, W) normalised, ``semantic`` (B, H, W) int64.
    """

    def __init__(self, backbone: nn.Module, num_classes: int, tuner: Tuner | None = None,
                 freeze_backbone: bool = False, head: str = "dpt", head_kwargs: dict[str, Any] | None = None,
                 ignore_index: int = IGNORE_INDEX, **kwargs) -> None:
        super().__init__(backbone=backbone, out_channels=num_classes, tuner=tuner,
                         freeze_backbone=freeze_backbone, head=head, head_kwargs=head_kwargs, **kwargs)
        self.save_hparams("backbone", "tuner")
        self.num_classes = num_classes
        self.ignore_index = ignore_index
        self.val_metrics = MetricCollection({
            "mIoU": MulticlassJaccardIndex(num_classes, ignore_index=ignore_index, average="macro"),
            "pixel_acc": MulticlassAccuracy(num_classes, ignore_index=ignore_index, average="micro"),
        }, prefix="val/")
        self.test_metrics = self.val_metrics.clone(prefix="test/")

    def loss(self, out: Tensor, batch: dict[str, Tensor]) -> Tensor:
        return F.cross_entropy(out, batch["semantic"], ignore_index=self.ignore_index)

    def update_metrics(self, metrics: Metric | MetricCollection, out: Tensor, batch: dict[str, Tensor]) -> None:
        metrics.update(out.argmax(1), batch["semantic"])

    def predict_step(self, batch: dict[str, Tensor], batch_idx: int) -> dict[str, Tensor]:
        logits = self(batch["image"])
        return {"semantic": logits.argmax(1), "probs": logits.softmax(1)}

    @torch.no_grad()
    def visualize(self, batch: dict[str, Tensor], output: Tensor, max_images: int = 4) -> dict[str, np.ndarray]:
        """Input | prediction | ground truth, one row per sample."""
        pred = output.argmax(1)
        n = min(max_images, len(pred))
        return {f"{i}: image | prediction | target": panel([
            to_uint8_image(batch["image"][i]),
            colorize_labels(pred[i], self.num_classes, self.ignore_index),
            colorize_labels(batch["semantic"][i], self.num_classes, self.ignore_index),
        ]) for i in range(n)}


class DepthEstimation(DenseTask):
    """Monocular depth with a bounded output ``max_depth * sigmoid(x)`` (GLPDepth/BinsFormer style).

    Losses: ``"silog"`` (Eigen et al. 2014 scale-invariant log loss,
    ``sqrt(mean g² − λ (mean g)²)`` with ``g = log d̂ − log d``, λ = ``silog_lambda``, scaled by 10 as in
    BTS/GLPDepth), or ``"l1"``. Reports AbsRel, RMSE and δ<1.25 (plus δ², δ³, SqRel, RMSE-log, log10).

    Args:
        backbone, tuner, freeze_backbone, head, head_kwargs: see :class:`DenseTask`.
        max_depth: depth range upper bound in metres (10 for NYU-v2, 80 for KITTI).
        min_depth: lower bound for valid ground truth and for evaluation.
        loss: ``"silog"`` or ``"l1"``.
        silog_lambda: variance focus λ of the SILog loss.
        **kwargs: optimizer and schedule options of :class:`VitlabModule`.

    Batches: ``image`` (B, 3, H, W) normalised, ``depth`` (B, 1, H, W) metres, +inf where invalid.
    """

    def __init__(self, backbone: nn.Module, tuner: Tuner | None = None, freeze_backbone: bool = False,
                 head: str = "dpt", head_kwargs: dict[str, Any] | None = None, max_depth: float = 10.0,
                 min_depth: float = 1e-3, loss: str = "silog", silog_lambda: float = 0.85, **kwargs) -> None:
        if loss not in ("silog", "l1"):
            raise ValueError(f"DepthEstimation: loss must be 'silog' or 'l1', got {loss!r}")
        super().__init__(backbone=backbone, out_channels=1, tuner=tuner, freeze_backbone=freeze_backbone,
                         head=head, head_kwargs=head_kwargs, **kwargs)
        self.save_hparams("backbone", "tuner")
        self.max_depth = max_depth
        self.min_depth = min_depth
        self.loss_name = loss
        self.silog_lambda = silog_lambda
        self.val_metrics = DepthMetrics(min_depth, max_depth)
        self.test_metrics = DepthMetrics(min_depth, max_depth)
        if hasattr(self.head, "fp32_output"):
            self.head.fp32_output = True  # the regression output block runs in fp32 under bf16 autocast

    def forward(self, image: Tensor) -> Tensor:
        # fp32 even under bf16 autocast: depth is a regression target (SILog takes logs of it)
        return self.max_depth * torch.sigmoid(super().forward(image).float())

    def loss(self, out: Tensor, batch: dict[str, Tensor]) -> Tensor:
        """Mean over valid pixels as masked sums (fixed shapes, no host sync); 0 with the graph kept (DDP)
        on a batch without valid ground truth."""
        out = out.float()
        target = batch["depth"].float()
        valid = torch.isfinite(target) & (target > self.min_depth)
        w = valid.to(out.dtype)
        n = w.sum()
        denom = n.clamp(min=1.0)
        gt = torch.where(valid, target, torch.ones_like(target))
        if self.loss_name == "l1":
            return ((out - gt).abs() * w).sum() / denom
        g = (torch.log(out.clamp(min=self.min_depth)) - torch.log(gt)) * w
        mean_g, mean_g2 = g.sum() / denom, g.pow(2).sum() / denom
        silog = 10.0 * torch.sqrt((mean_g2 - self.silog_lambda * mean_g.pow(2)).clamp(min=1e-8))
        return torch.where(n > 0, silog, out.sum() * 0.0)

    def update_metrics(self, metrics: Metric | MetricCollection, out: Tensor, batch: dict[str, Tensor]) -> None:
        metrics.update(out, batch["depth"])

    def predict_step(self, batch: dict[str, Tensor], batch_idx: int) -> dict[str, Tensor]:
        return {"depth": self(batch["image"])}

    @torch.no_grad()
    def visualize(self, batch: dict[str, Tensor], output: Tensor, max_images: int = 4) -> dict[str, np.ndarray]:
        """Input | predicted depth | ground truth, with a shared colour range per sample."""
        n = min(max_images, len(output))
        return {f"{i}: image | prediction | target": panel([
            to_uint8_image(batch["image"][i]),
            colorize_depth(output[i, 0], vmin=0.0, vmax=self.max_depth),
            colorize_depth(batch["depth"][i, 0], vmin=0.0, vmax=self.max_depth),
        ]) for i in range(n)}
