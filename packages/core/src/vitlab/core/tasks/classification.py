"""Image classification: linear probing and fine-tuning of a ViT (MAE evaluation protocols)."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torchmetrics import MetricCollection
from torchmetrics.classification import MulticlassAccuracy

from vitlab.core.tasks.base import BackboneTask
from vitlab.core.tuner import Tuner
from vitlab.core.visualize import to_uint8_image


class ImageClassification(BackboneTask):
    """Classify images with a pooled ViT feature and a linear head.

    Linear probe (MAE recipe): ``freeze_backbone: true`` and ``probe_batchnorm: true`` — a BatchNorm
    without affine parameters before the head (MAE ``main_linprobe.py``), weight decay 0.
    Fine-tuning (MAE/BEiT recipe): ``layer_decay: 0.65`` (ViT-B), ``label_smoothing: 0.1``, drop path on
    the backbone; the head weight is initialised with std 2e-5 (MAE ``models_vit``) or 0.01 for probing.

    Args:
        backbone: the ViT (``forward(x)`` returns pooled (B, D) features).
        num_classes: number of classes.
        tuner, freeze_backbone: see :class:`BackboneTask`.
        probe_batchnorm: BatchNorm1d(affine=False) on features before the head.
        label_smoothing: cross-entropy label smoothing.
        **kwargs: optimizer and schedule options of :class:`VitlabModule`.

    Batches are dicts with ``image`` (B, 3, H, W), normalised, and ``label`` (B,).
    """

    default_writer = "vitlab.core.writers.DensePredictionWriter"

    def __init__(
        self,
        backbone: nn.Module,
        num_classes: int,
        tuner: Tuner | None = None,
        freeze_backbone: bool = False,
        probe_batchnorm: bool = False,
        label_smoothing: float = 0.0,
        **kwargs,
    ) -> None:
        super().__init__(backbone=backbone, tuner=tuner, freeze_backbone=freeze_backbone, **kwargs)
        self.save_hparams("backbone", "tuner")
        dim = int(self.backbone.embed_dim)
        self.head = nn.Sequential(
            nn.BatchNorm1d(dim, affine=False, eps=1e-6) if probe_batchnorm else nn.Identity(),
            nn.Linear(dim, num_classes),
        )
        nn.init.trunc_normal_(self.head[1].weight, std=0.01 if freeze_backbone else 2e-5)
        nn.init.zeros_(self.head[1].bias)
        self.label_smoothing = label_smoothing
        # top-k accuracy over all images (ImageNet convention), not torchmetrics' default class average
        metrics = {"acc1": MulticlassAccuracy(num_classes, top_k=1, average="micro")}
        if num_classes > 5:
            metrics["acc5"] = MulticlassAccuracy(num_classes, top_k=5, average="micro")
        self.val_metrics = MetricCollection(metrics, prefix="val/")
        self.test_metrics = self.val_metrics.clone(prefix="test/")

    def data_num_classes(self, datamodule) -> int | None:
        """Image-level classes. Scene DataModules (with ``modalities``) count pixel classes in
        ``num_classes``; their image-label count is ``num_labels`` when they state it."""
        if hasattr(datamodule, "modalities"):
            value = getattr(datamodule, "num_labels", None)
            return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else None
        return super().data_num_classes(datamodule)

    def forward(self, image: Tensor) -> Tensor:
        return self.head(self.backbone(image))

    def training_step(self, batch: dict[str, Tensor], batch_idx: int) -> Tensor:
        logits = self(batch["image"])
        loss = F.cross_entropy(logits, batch["label"], label_smoothing=self.label_smoothing)
        self.log("train/loss", loss, prog_bar=True)
        return loss

    def _eval_step(self, batch: dict[str, Tensor], metrics: MetricCollection, stage: str) -> Tensor:
        logits = self(batch["image"])
        loss = F.cross_entropy(logits, batch["label"])
        metrics.update(logits, batch["label"])
        self.log(f"{stage}/loss", loss, sync_dist=True)
        self.log_dict(metrics, prog_bar=stage == "val")
        return logits

    def validation_step(self, batch: dict[str, Tensor], batch_idx: int) -> Tensor:
        return self._eval_step(batch, self.val_metrics, "val")

    def test_step(self, batch: dict[str, Tensor], batch_idx: int) -> Tensor:
        return self._eval_step(batch, self.test_metrics, "test")

    def predict_step(self, batch: dict[str, Tensor], batch_idx: int) -> dict[str, Tensor]:
        probs = self(batch["image"]).softmax(-1)
        return {"probs": probs, "label": probs.argmax(-1)}

    @torch.no_grad()
    def visualize(self, batch: dict[str, Tensor], output: Tensor, max_images: int = 4) -> dict[str, np.ndarray]:
        """Input images captioned with predicted and true class, for :class:`PredictionImageLogger`."""
        pred = output.argmax(-1)
        n = min(max_images, len(pred))
        return {f"{i}: pred {int(pred[i])} / true {int(batch['label'][i])}": to_uint8_image(batch["image"][i])
                for i in range(n)}
