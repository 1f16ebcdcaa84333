"""Callbacks shared by every vitlab method."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
from lightning.pytorch import Callback, LightningModule, Trainer
from lightning.pytorch.callbacks import ModelCheckpoint as _LightningModelCheckpoint
from lightning.pytorch.callbacks import ModelSummary as _LightningModelSummary
from lightning.pytorch.callbacks.progress.progress_bar import ProgressBar
from lightning.pytorch.loggers import TensorBoardLogger, WandbLogger

from vitlab.core.errors import VitlabError


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


class NonFiniteLossError(VitlabError, FloatingPointError):
    """Training produced a NaN/Inf loss; the message names the step, the loss terms and the batch."""


def logged_scalars(trainer: Trainer, extra: dict[str, Any] | None = None) -> dict[str, float]:
    """The one-element tensors of ``trainer.callback_metrics`` (and ``extra``) as floats, read in one transfer.

    The guard, the progress printer and anything else that shows logged values on a logging step share this
    read: values not read yet in this step are stacked per device and copied to the host at once (one sync
    for all, not one per value per reader); a value already read (the same tensor object) is not read again.
    """
    import torch

    items = {k: v for k, v in trainer.callback_metrics.items()
             if isinstance(v, torch.Tensor) and v.numel() == 1}
    items.update(extra or {})
    step, cache = trainer.__dict__.get("_vitlab_logged_scalars", (None, {}))
    if step != trainer.global_step:
        cache = {}
        trainer.__dict__["_vitlab_logged_scalars"] = (trainer.global_step, cache)
    by_device: dict[Any, list[torch.Tensor]] = {}
    for v in items.values():
        if id(v) not in cache:
            by_device.setdefault(v.device, []).append(v)
    for tensors in by_device.values():
        flat = torch.stack([t.detach().reshape(()).float() for t in tensors])
        for t, value in zip(tensors, flat.cpu().tolist()):
            cache[id(t)] = (t, value)  # the tensor is kept so its id is not reused within the step
    return {k: cache[id(v)][1] for k, v in items.items()}


class NonFiniteGuard(Callback):
    """Stops training with :class:`NonFiniteLossError` as soon as a loss term is NaN or infinite.

    Checking ``torch.isfinite(loss)`` after every step would force a device-to-host sync each step. Instead
    the guard folds every tensor of the step's output (``loss`` and any other returned terms) into one flag
    on the device, remembers there the index of the first bad step since the last check (the step's global
    step, epoch and batch index stay on the host, so nothing is copied to the device either), and reads the
    flag only on steps that sync anyway: every ``check_every_n_steps`` (default: the trainer's
    ``log_every_n_steps``), before a step-based checkpoint is written, before validation and at the end of
    every epoch — in the same single read as the logged values (:func:`logged_scalars`). So a diverged run
    never writes a "best" checkpoint of NaN weights and never exits 0. The CLI adds it unless
    ``fail_on_nonfinite: false``.

    Modules with manual optimisation that return nothing from ``training_step`` are covered through the
    ``train/*`` values they log, read on the check steps.
    """

    def __init__(self, check_every_n_steps: int | None = None) -> None:
        self.check_every_n_steps = check_every_n_steps
        self._bad = None  # bool tensor on the device: any non-finite term seen since the last check
        self._first = None  # long tensor on the device: index into _steps of the first bad step, -1 if none
        self._count = None  # long tensor on the device: steps recorded since the last check
        self._steps: list[tuple[int, int, int]] = []  # (global step, epoch, batch index) since the last check

    def _period(self, trainer: Trainer) -> int:
        return max(1, int(self.check_every_n_steps or trainer.log_every_n_steps or 50))

    @staticmethod
    def _terms(outputs: Any) -> dict[str, Any]:
        import torch

        if isinstance(outputs, torch.Tensor):
            return {"loss": outputs}
        if isinstance(outputs, dict):
            return {k: v for k, v in outputs.items() if isinstance(v, torch.Tensor) and v.is_floating_point()}
        return {}

    def on_train_batch_end(self, trainer: Trainer, pl_module: LightningModule, outputs: Any, batch: Any,
                           batch_idx: int) -> None:
        import torch

        terms = self._terms(outputs)
        if terms:
            bad = torch.stack([~torch.isfinite(t.detach()).all() for t in terms.values()]).any()
            if self._bad is None or self._bad.device != bad.device:
                self._bad = torch.zeros((), dtype=torch.bool, device=bad.device)
                self._first = torch.full((), -1, dtype=torch.long, device=bad.device)
                self._count = torch.zeros((), dtype=torch.long, device=bad.device)
                self._steps = []
            self._first = torch.where(bad & ~self._bad, self._count, self._first)
            self._bad = self._bad | bad
            self._count = self._count + 1
            self._steps.append((trainer.global_step, trainer.current_epoch, batch_idx))
        step = trainer.global_step
        if step % self._period(trainer) == 0 or self._checkpoint_due(trainer, step):
            self.check(trainer, pl_module, where="training step")

    @staticmethod
    def _checkpoint_due(trainer: Trainer, step: int) -> bool:
        for cb in trainer.checkpoint_callbacks:
            every = getattr(cb, "_every_n_train_steps", 0) or 0
            if every and step % every == 0:
                return True
        return False

    def on_validation_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if not trainer.sanity_checking:
            self.check(trainer, pl_module, where="validation")

    def on_train_epoch_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self.check(trainer, pl_module, where="epoch end")

    def check(self, trainer: Trainer, pl_module: LightningModule, where: str) -> None:
        """Read the flag with the logged values (one host sync) and raise if any term was non-finite."""
        import math

        extra = {} if self._bad is None else {"\0guard/bad": self._bad, "\0guard/first": self._first}
        values = logged_scalars(trainer, extra)
        logged = {k: v for k, v in values.items() if k.startswith("train")}
        bad_logged = {k: v for k, v in logged.items() if not math.isfinite(v)}
        flagged = bool(values.get("\0guard/bad", 0.0))
        if not flagged and not bad_logged:
            if self._steps:  # nothing bad since the last check: start a new window
                self._steps = []
                self._count = self._count.zero_()
            return
        if flagged:
            first = int(values["\0guard/first"])
            step, epoch, batch_idx = self._steps[first] if 0 <= first < len(self._steps) else (-1, -1, -1)
            head = f"non-finite loss at global step {step} (epoch {epoch}, batch {batch_idx})"
        else:
            head = f"non-finite logged loss by global step {trainer.global_step} (epoch {trainer.current_epoch})"
        terms = ", ".join(f"{k}={v:.4g}" for k, v in sorted(logged.items())) or "no terms logged yet"
        raise NonFiniteLossError(
            f"{head}, detected at {where} of {type(pl_module).__name__}. Last logged terms: {terms}. "
            "Lower the learning rate, check the inputs of that batch, or set `fail_on_nonfinite: false` "
            "to keep training anyway."
        )


class ModelSummary(_LightningModelSummary):
    """Lightning's model summary without the FLOPs column and "Total Flops" line when no FLOPs were counted.

    Lightning counts FLOPs only for a module with an ``example_input_array``; vitlab's modules take batch dicts of
    any size and set none, so the stock table printed a column of zeros and "0 Total Flops" on every run. The CLI
    adds this one unless a config lists a ``ModelSummary`` (``--trainer.enable_model_summary false`` hides it).
    """

    @staticmethod
    def summarize(summary_data, total_parameters, trainable_parameters, model_size, total_training_modes,
                  total_flops, **summarize_kwargs) -> None:
        import logging

        from lightning.pytorch.utilities.model_summary.model_summary import _format_summary_table

        if total_flops:
            return _LightningModelSummary.summarize(summary_data, total_parameters, trainable_parameters, model_size,
                                                    total_training_modes, total_flops, **summarize_kwargs)
        cols = [c for c in summary_data if c[0] != "FLOPs"]
        table = _format_summary_table(total_parameters, trainable_parameters, model_size, total_training_modes, 0,
                                      *cols)
        lines = table.splitlines()
        if lines and lines[-1].rstrip().endswith("Total Flops"):
            lines = lines[:-1]
        logging.getLogger("lightning.pytorch.callbacks.model_summary").info("\n" + "\n".join(lines))


class PlainProgressBar(ProgressBar):
    """Progress as plain lines, for output that is not a terminal (CI, ``nohup``, log files).

    One line every ``every_n_steps`` training steps (default: ``log_every_n_steps``) and one per
    validation / epoch end, each with the logged metrics. Metrics are read only on those steps, so
    the bar adds no per-step device sync.
    """

    def __init__(self, every_n_steps: int | None = None) -> None:
        super().__init__()
        self.every_n_steps = every_n_steps
        self._enabled = True
        self._last_step = -1
        self._total: int | str = "?"

    def on_train_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        total = trainer.max_steps if trainer.max_steps and trainer.max_steps > 0 else trainer.estimated_stepping_batches
        self._total = int(total) if total != float("inf") else "?"  # max_epochs x batches per epoch when finite

    def disable(self) -> None:
        self._enabled = False

    def enable(self) -> None:
        self._enabled = True

    def _line(self, trainer: Trainer, pl_module: LightningModule, what: str) -> None:
        if not self._enabled or not trainer.is_global_zero:
            return
        # callback_metrics hold every logged value (the progress-bar dict keeps only prog_bar ones); read only
        # on the steps a line is printed
        metrics = logged_scalars(trainer)  # one read shared with the non-finite guard
        shown = "  ".join(f"{k} {v:.4g}" if isinstance(v, float) else f"{k} {v}" for k, v in sorted(metrics.items()))
        print(f"[epoch {trainer.current_epoch} step {trainer.global_step}/{self._total}] {what}  {shown}", flush=True)
        self._last_step = trainer.global_step

    def on_train_batch_end(self, trainer: Trainer, pl_module: LightningModule, outputs: Any, batch: Any,
                           batch_idx: int) -> None:
        every = max(1, int(self.every_n_steps or trainer.log_every_n_steps or 50))
        if trainer.global_step % every == 0:
            self._line(trainer, pl_module, "train")

    def on_validation_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if not trainer.sanity_checking:
            self._line(trainer, pl_module, "validation")

    def on_train_epoch_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if self._last_step != trainer.global_step:  # validation just printed this step's metrics
            self._line(trainer, pl_module, "epoch end")

    def on_train_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if self._last_step != trainer.global_step:
            self._line(trainer, pl_module, "done")


class ModelCheckpoint(_LightningModelCheckpoint):
    """Lightning's ``ModelCheckpoint`` whose ``last.ckpt`` is always the latest state.

    With ``monitor`` and ``save_last``, Lightning refreshes ``last.ckpt`` only when a top-k checkpoint is
    written, i.e. when the metric improved (or on an ``every_n_epochs`` boundary), so ``--ckpt_path last``
    could roll a run back. Here ``last.ckpt`` is rewritten at every point where a checkpoint could be
    written (end of validation / epoch, every ``every_n_train_steps``), improved or not, once more when
    training ends at a step it does not hold yet, and on demand through :meth:`save_last_now` (the CLI's
    :class:`~vitlab.core.preemption.PreemptionCheckpoint` calls it on SIGTERM). With ``save_last: link``
    the link is replaced by a file whenever no checkpoint of the current step exists to link to. All
    arguments are Lightning's; the CLI runs a config's stock ``ModelCheckpoint`` as this class.
    """

    _last_step: int | None = None  # the global step last.ckpt holds, as written by this process

    def _save_last_checkpoint(self, trainer: Trainer, monitor_candidates: dict[str, Any]) -> None:
        if self.save_last == "link" and self._last_global_step_saved != trainer.global_step:
            # nothing of this step to link to: write the state itself
            self.last_model_path = self.format_checkpoint_name(monitor_candidates, self.CHECKPOINT_NAME_LAST)
            self._save_checkpoint(trainer, self.last_model_path)
        else:
            super()._save_last_checkpoint(trainer, monitor_candidates)
        if self.save_last:
            self._last_step = trainer.global_step

    def save_last_now(self, trainer: Trainer) -> str | None:
        """Write ``last.ckpt`` for the current step unless it holds it already; returns its path (None: off)."""
        from lightning.pytorch.trainer.states import TrainerFn

        if not self.save_last or trainer.fast_dev_run or trainer.sanity_checking \
                or trainer.state.fn != TrainerFn.FITTING or trainer.global_step == 0:
            return None  # step 0: nothing trained yet, as Lightning never saves it
        if self._last_step != trainer.global_step:
            self._save_last_checkpoint(trainer, self._monitor_candidates(trainer))
        return self.last_model_path or None

    def _refresh_last(self, trainer: Trainer) -> None:
        self.save_last_now(trainer)

    def on_train_batch_end(self, trainer: Trainer, pl_module: LightningModule, outputs: Any, batch: Any,
                           batch_idx: int) -> None:
        super().on_train_batch_end(trainer, pl_module, outputs, batch, batch_idx)
        every = self._every_n_train_steps
        if every and trainer.global_step % every == 0:
            self._refresh_last(trainer)

    def on_train_epoch_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        super().on_train_epoch_end(trainer, pl_module)
        if self._should_save_on_train_epoch_end(trainer):
            self._refresh_last(trainer)

    def on_validation_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        super().on_validation_end(trainer, pl_module)
        if not self._should_save_on_train_epoch_end(trainer):
            self._refresh_last(trainer)

    def on_train_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        super().on_train_end(trainer, pl_module)
        self.save_last_now(trainer)  # e.g. max_steps reached between two save points
