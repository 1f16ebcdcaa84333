"""Callbacks shared by every vitlab method."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
from lightning.pytorch import Callback, LightningModule, Trainer
from lightning.pytorch.loggers import TensorBoardLogger, WandbLogger


class PredictionImageLogger(Callback):
    """Logs prediction pictures of the first validation batch every ``every_n_epochs`` epochs.

    The module supplies the pictures through ``visualize(batch, output, max_images) -> {caption: HxWx3
    uint8}`` (input | prediction | target panels). They go to W&B (``log_image``), TensorBoard
    (``add_image``) or, without either logger, to PNG files under ``<log_dir>/predictions/``.

    Args:
        every_n_epochs: logging period in epochs.
        max_images: samples shown per logging step.
    """

    def __init__(self, every_n_epochs: int = 1, max_images: int = 4) -> None:
        self.every_n_epochs = every_n_epochs
        self.max_images = max_images

    def on_validation_batch_end(self, trainer: Trainer, pl_module: LightningModule, outputs: Any,
                                batch: Any, batch_idx: int, dataloader_idx: int = 0) -> None:
        if batch_idx != 0 or trainer.sanity_checking or outputs is None:
            return
        if trainer.current_epoch % self.every_n_epochs != 0 or not hasattr(pl_module, "visualize"):
            return
        if trainer.is_global_zero:  # pictures come from rank zero's batch; other ranks skip the work
            self.log_images(trainer, pl_module.visualize(batch, outputs, self.max_images))

    def log_images(self, trainer: Trainer, images: dict[str, np.ndarray]) -> None:
        if not images:
            return
        step = trainer.global_step
        captions, pics = list(images), list(images.values())
        logged = False
        for logger in trainer.loggers:
            if isinstance(logger, WandbLogger):
                logger.log_image(key="val/predictions", images=pics, caption=captions, step=step)
                logged = True
            elif isinstance(logger, TensorBoardLogger):
                for k, (cap, pic) in enumerate(images.items()):
                    logger.experiment.add_image(f"val/predictions/{k}", pic, step, dataformats="HWC")
                    logger.experiment.add_text(f"val/predictions/{k}", cap, step)
                logged = True
        if not logged:
            from PIL import Image

            out = Path(trainer.log_dir or trainer.default_root_dir) / "predictions"
            os.makedirs(out, exist_ok=True)
            for k, pic in enumerate(pics):
                Image.fromarray(pic).save(out / f"step{step:07d}_{k}.png")
