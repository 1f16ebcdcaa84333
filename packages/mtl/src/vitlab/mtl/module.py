"""The multi-task LightningModule base and the full fine-tuning baselines (single-task and MTL).

:class:`MultiTaskModule` owns what every multi-task method here shares: one backbone, a
:class:`~vitlab.mtl.heads.TaskDecoder` per task (Downsampler + HRNet head, MTLoRA §2.4), the weighted loss
``Σ_t w_t L_t`` (:class:`~vitlab.mtl.losses.MultiTaskLoss`), per-task dataset-level metrics, Δm against a
single-task reference logged at the end of validation, and prediction pictures per task (logged to W&B by
core's :class:`~vitlab.core.PredictionImageLogger`). Subclasses only change :meth:`encode`, which maps an
image to per-task multi-scale features.

Batches are dicts with ``image`` (B, 3, H, W), normalised, and one key per task: ``semseg``/``human_parts``
(B, H, W) int64 with 255 ignored, ``sal``/``edge`` (B, 1, H, W) in {0, 1}, ``normals`` (B, 3, H, W) unit
vectors (zero = invalid), ``depth`` (B, 1, H, W) metres (+inf = invalid).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from vitlab.core.tasks import VitlabModule
from vitlab.core.tuner import count_parameters
from vitlab.core.visualize import colorize_depth, colorize_labels, panel, to_uint8_image
from vitlab.mtl.heads import HRNET_W18_WIDTHS, TaskDecoder
from vitlab.mtl.losses import MultiTaskLoss
from vitlab.mtl.metrics import PRIMARY_METRIC, delta_m, resolve_reference, task_metric

__all__ = ["TASK_OUTPUTS", "MultiTaskModule", "MultiTaskFineTune"]

#: default output channels per task (PASCAL-Context: 21 classes, 7 parts; NYUD semseg takes 40)
TASK_OUTPUTS = {"semseg": 21, "human_parts": 7, "sal": 1, "normals": 3, "edge": 1, "depth": 1}


def _check_tasks(tasks: list[str]) -> list[str]:
    tasks = list(tasks)
    bad = [t for t in tasks if t not in TASK_OUTPUTS]
    if not tasks or bad or len(set(tasks)) != len(tasks):
        raise ValueError(f"tasks must be distinct names from {sorted(TASK_OUTPUTS)}, got {tasks}")
    return tasks


class MultiTaskModule(VitlabModule):
    """Shared backbone → per-task features → per-task decoders; weighted loss, metrics and Δm.

    Args:
        backbone: a multi-scale encoder with ``out_channels`` and ``forward_stages(image) -> list[Tensor]``
            (:class:`vitlab.core.Swin`).
        tasks: task names, e.g. ``[semseg, human_parts, sal, normals]``.
        num_outputs: output channels per task overriding :data:`TASK_OUTPUTS` (e.g. ``{semseg: 40}`` on NYUD).
        loss_weights: per-task weights overriding :data:`~vitlab.mtl.losses.TASK_WEIGHTS`.
        reference: single-task reference for Δm: a name from
            :data:`~vitlab.mtl.metrics.SINGLE_TASK_REFERENCES` (``mtlora_swin_t_pascal``), a ``{task: value}``
            dict, or None (Δm not logged).
        head_widths: Downsampler output widths (HRNet-W18: 18, 36, 72, 144).
        **kwargs: optimizer and schedule options of :class:`vitlab.core.VitlabModule`.
    """

    default_writer = "vitlab.mtl.writer.MultiTaskPredictionWriter"

    def __init__(self, backbone: nn.Module, tasks: list[str], num_outputs: dict[str, int] | None = None,
                 loss_weights: dict[str, float] | None = None, reference: str | dict[str, float] | None = None,
                 head_widths: list[int] | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.tasks = _check_tasks(tasks)
        self.num_outputs = {t: int((num_outputs or {}).get(t, TASK_OUTPUTS[t])) for t in self.tasks}
        self.reference = resolve_reference(reference)
        self.backbone = backbone
        self.head_widths = list(head_widths or HRNET_W18_WIDTHS)
        self.decoders = nn.ModuleDict({t: self.make_decoder(t) for t in self.tasks})
        self.criterion = MultiTaskLoss(self.tasks, loss_weights)
        self.val_metrics = nn.ModuleDict({t: task_metric(t, self.num_outputs[t]) for t in self.tasks})
        self.test_metrics = nn.ModuleDict({t: task_metric(t, self.num_outputs[t]) for t in self.tasks})

    # -- model ---------------------------------------------------------------------------------------
    def make_decoder(self, task: str) -> nn.Module:
        """The decoder of ``task``: ``decoder(features, image_size) -> (B, n_out, H, W)``."""
        return TaskDecoder(list(self.backbone.out_channels), self.num_outputs[task], self.head_widths)

    def encode(self, image: Tensor) -> dict[str, list[Tensor]]:
        """Per-task multi-scale features; the base shares the backbone's stage outputs between tasks."""
        feats = self.backbone.forward_stages(image)
        return {t: feats for t in self.tasks}

    def forward(self, image: Tensor) -> dict[str, Tensor]:
        feats = self.encode(image)
        size = image.shape[-2:]
        return {t: self.decoders[t](feats[t], size).float() for t in self.tasks}

    # -- steps ---------------------------------------------------------------------------------------
    def training_step(self, batch: dict[str, Tensor], batch_idx: int) -> Tensor:
        total, losses = self.criterion(self(batch["image"]), batch)
        self.log("train/loss", total, prog_bar=True)
        self.log_dict({f"train/loss_{t}": v for t, v in losses.items()})
        return total

    def validation_step(self, batch: dict[str, Tensor], batch_idx: int) -> dict[str, Tensor]:
        return self._eval_step(batch, self.val_metrics, "val")

    def test_step(self, batch: dict[str, Tensor], batch_idx: int) -> dict[str, Tensor]:
        return self._eval_step(batch, self.test_metrics, "test")

    def _eval_step(self, batch: dict[str, Tensor], metrics: nn.ModuleDict, stage: str) -> dict[str, Tensor]:
        out = self(batch["image"])
        total, losses = self.criterion(out, batch)
        self.log(f"{stage}/loss", total, sync_dist=True)
        for t in self.tasks:
            metrics[t].update(out[t], batch[t])
        return out

    def on_validation_epoch_end(self) -> None:
        self._log_metrics(self.val_metrics, "val")

    def on_test_epoch_end(self) -> None:
        self._log_metrics(self.test_metrics, "test")

    def compute_metrics(self, metrics: Mapping[str, Any]) -> dict[str, float]:
        """``{task/name: value}`` for every task metric, plus ``delta_m`` when a reference is set."""
        values: dict[str, Tensor] = {}
        primary: dict[str, float] = {}
        for t in self.tasks:
            computed = metrics[t].compute()
            for k, v in computed.items():
                values[f"{t}/{k}"] = v
            if PRIMARY_METRIC[t] in computed:
                primary[t] = float(computed[PRIMARY_METRIC[t]])
        if self.reference is not None and any(t in primary for t in self.reference):
            values["delta_m"] = torch.tensor(delta_m(primary, self.reference))
        return values

    def _log_metrics(self, metrics: nn.ModuleDict, stage: str) -> None:
        values = self.compute_metrics(metrics)
        self.log_dict({f"{stage}/{k}": v for k, v in values.items()}, prog_bar=False)
        for m in metrics.values():
            m.reset()

    def predict_step(self, batch: dict[str, Tensor], batch_idx: int) -> dict[str, Tensor]:
        out = self(batch["image"])
        pred = {}
        for t, o in out.items():
            if t in ("semseg", "human_parts"):
                pred[t] = o.argmax(1)
            elif t in ("sal", "edge"):
                pred[t] = torch.sigmoid(o)
            elif t == "normals":
                pred[t] = torch.nn.functional.normalize(o, dim=1)
            else:
                pred[t] = o
        return pred

    def on_fit_start(self) -> None:
        stats = {"params/trainable": float(count_parameters(self, trainable_only=True)),
                 "params/total": float(count_parameters(self)),
                 "params/decoders": float(count_parameters(self.decoders, trainable_only=True))}
        for logger in self.loggers:
            logger.log_metrics(stats, step=0)

    # -- pictures ------------------------------------------------------------------------------------
    def _picture(self, task: str, x: Tensor, prediction: bool) -> np.ndarray:
        if task in ("semseg", "human_parts"):
            labels = x.argmax(0) if x.dim() == 3 else x
            return colorize_labels(labels, self.num_outputs[task])
        if task in ("sal", "edge"):
            v = torch.sigmoid(x[0].float()) if prediction else x[0].float()
            g = (v.clamp(0, 1) * 255).to(torch.uint8).cpu().numpy()
            return np.repeat(g[..., None], 3, axis=-1)
        if task == "normals":
            n = torch.nn.functional.normalize(x.float(), dim=0)
            return ((n + 1) * 127.5).clamp(0, 255).to(torch.uint8).permute(1, 2, 0).cpu().numpy()
        return colorize_depth(x[0])

    @torch.no_grad()
    def visualize(self, batch: dict[str, Tensor], output: dict[str, Tensor], max_images: int = 4) -> dict[str, np.ndarray]:
        """Per task and sample: input | prediction | ground truth."""
        n = min(max_images, batch["image"].shape[0])
        pics = {}
        for t in self.tasks:
            for i in range(n):
                pics[f"{t} {i}: image | prediction | target"] = panel([
                    to_uint8_image(batch["image"][i]), self._picture(t, output[t][i], True),
                    self._picture(t, batch[t][i], False)])
        return pics


class MultiTaskFineTune(MultiTaskModule):
    """Full fine-tuning baselines of MTLoRA's Table 1: **MTL full FT** (several tasks, one shared backbone
    trained end to end) and, with one task, the **single-task** reference of Δm. ``freeze_backbone`` trains the
    decoders only (MTLoRA's "tuning decoders only" row: 1,946,624 parameters for Swin-T and four PASCAL tasks).

    Args:
        backbone, tasks, num_outputs, loss_weights, reference, head_widths: see :class:`MultiTaskModule`.
        freeze_backbone: train the decoders only.
        **kwargs: optimizer and schedule options of :class:`vitlab.core.VitlabModule`.
    """

    default_writer = "vitlab.mtl.writer.MultiTaskPredictionWriter"

    def __init__(self, backbone: nn.Module, tasks: list[str], num_outputs: dict[str, int] | None = None,
                 loss_weights: dict[str, float] | None = None, reference: str | dict[str, float] | None = None,
                 head_widths: list[int] | None = None, freeze_backbone: bool = False, **kwargs: Any) -> None:
        super().__init__(backbone=backbone, tasks=tasks, num_outputs=num_outputs, loss_weights=loss_weights,
                         reference=reference, head_widths=head_widths, **kwargs)
        self.save_hparams("backbone")
        self.freeze_backbone = freeze_backbone
        if freeze_backbone:
            self.backbone.requires_grad_(False)

    def train(self, mode: bool = True):
        super().train(mode)
        if self.freeze_backbone:
            self.backbone.eval()
        return self
