"""The LightningModule base every vitlab method derives from.

It owns what all recipes share, so no method re-implements it: the optimizer built from
:func:`vitlab.core.optim.param_groups` (no weight decay on 1-D parameters and tokens, optional
layer-wise lr decay), the per-step warmup + half-cycle cosine schedule, optional ``torch.compile``,
and the backbone + tuner wiring of the downstream tasks.
"""

from __future__ import annotations

import inspect
import math
import os
import random
import warnings
from collections.abc import Callable
from typing import Any

import torch
from lightning.pytorch import LightningModule
from lightning.pytorch.cli import OptimizerCallable
from lightning.pytorch.core.mixins.hparams_mixin import _given_hyperparameters
from lightning.pytorch.plugins.precision import MixedPrecision
from torch import nn

from vitlab.core.optim import make_adamw, param_groups, warmup_cosine_scheduler
from vitlab.core.perf import compile_regions
from vitlab.core.restore import restoring, restoring_from_checkpoint
from vitlab.core.tuner import Tuner, count_parameters


def _import_path(obj: Any) -> str | None:
    """``module.qualname`` of a module-level function or class, or None (lambdas, partials, closures)."""
    module, qualname = getattr(obj, "__module__", None), getattr(obj, "__qualname__", None)
    if not module or not qualname or "<" in qualname:
        return None
    return f"{module}.{qualname}"


def _import_object(path: str) -> Any:
    import importlib

    module, _, name = path.rpartition(".")
    try:
        return getattr(importlib.import_module(module), name)
    except (ImportError, AttributeError, ValueError) as err:
        raise ValueError(f"optimizer {path!r}: cannot import it ({err})") from err


def collect_rng_states() -> dict[str, Any]:
    """Global RNG states of torch (+CUDA), numpy and Python as tensors and plain types (``weights_only``-safe)."""
    import numpy as np

    name, keys, pos, has_gauss, gauss = np.random.get_state()
    states = {"torch": torch.get_rng_state(), "python": random.getstate(),
              "numpy": (name, torch.from_numpy(keys.astype(np.int64)), int(pos), int(has_gauss), float(gauss))}
    if torch.cuda.is_available():
        states["torch.cuda"] = torch.cuda.get_rng_state_all()
    return states


def set_rng_states(states: dict[str, Any]) -> None:
    """Inverse of :func:`collect_rng_states`."""
    import numpy as np

    torch.set_rng_state(states["torch"])
    python = states["python"]
    random.setstate((python[0], tuple(python[1]), python[2]))
    name, keys, pos, has_gauss, gauss = states["numpy"]
    np.random.set_state((name, keys.numpy().astype(np.uint32), pos, has_gauss, gauss))
    if "torch.cuda" in states and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(states["torch.cuda"])


def adamw(params) -> torch.optim.Optimizer:
    """Default optimizer: AdamW with the MAE/CroCo betas, fused where the device has the kernel (CUDA,
    CPU); lr and weight decay come from the groups."""
    return make_adamw(params, betas=(0.9, 0.95))


class VitlabModule(LightningModule):
    #: decay cls/mask tokens and learned position tables too (official MAE pre-training does)
    decay_tokens: bool = False

    """Base LightningModule: optimizer groups, schedule and compile flag.

    Args:
        optimizer: optimizer class or callable taking parameter groups
            (``{class_path: torch.optim.SGD, init_args: {momentum: 0.9}}``). Every group carries its own
            ``lr`` and ``weight_decay``, so the optimizer's defaults for those never apply.
        lr: peak learning rate (after warmup).
        weight_decay: decoupled weight decay on >= 2-D weights.
        layer_decay: layer-wise lr decay (BEiT/MAE fine-tuning, e.g. 0.65 for ViT-B); None = off.
        warmup_epochs: linear warmup length in epochs (fractions allowed).
        warmup_steps: warmup length in optimizer steps; added to ``warmup_epochs``.
        min_lr: learning rate at the end of the cosine.
        compile: ``torch.compile`` the network's transformer blocks and dense heads in place (regional
            compilation, :func:`vitlab.core.perf.compile_regions`; GPU runs; off by default because each new
            input shape costs a recompilation).
        compile_options: ``torch.compile`` keyword arguments, e.g. ``{mode: max-autotune-no-cudagraphs}``
            (default: none, i.e. inductor's default mode).
    """

    def __init__(
        self,
        optimizer: OptimizerCallable = adamw,
        lr: float = 1e-3,
        weight_decay: float = 0.05,
        layer_decay: float | None = None,
        warmup_epochs: float = 0.0,
        warmup_steps: int = 0,
        min_lr: float = 0.0,
        compile: bool = False,
        compile_options: dict[str, Any] | None = None,
    ) -> None:
        super().__init__()
        self.optimizer_factory = _import_object(optimizer) if isinstance(optimizer, str) else optimizer
        self.lr = lr
        self.weight_decay = weight_decay
        self.layer_decay = layer_decay
        self.warmup_epochs = warmup_epochs
        self.warmup_steps = warmup_steps
        self.min_lr = min_lr
        self.compile_model = compile
        self.compile_options = dict(compile_options or {})

    def save_hparams(self, *module_args: str) -> None:
        """``save_hyperparameters`` that keeps checkpoints loadable both ways.

        Under LightningCLI the parsed config (plain dicts, including the ``backbone``/``tuner`` class paths)
        is saved whole, so ``Module.load_from_checkpoint(path)`` rebuilds every sub-module. Built from plain
        Python, the ``module_args`` (``nn.Module`` instances) are left out of the hyper-parameters and must
        be passed again to ``load_from_checkpoint``.
        """
        from_cli = _given_hyperparameters.get() is not None
        self.save_hyperparameters(ignore=[] if from_cli else list(module_args), frame=inspect.currentframe().f_back)
        # Functions (a default optimizer factory ...) are stored by import path, so checkpoints load with
        # `weights_only=True`; anything not importable by name is left out.
        for store in (self._hparams, getattr(self, "_hparams_initial", {})):
            for key, value in list(store.items()):
                if callable(value) and not isinstance(value, (type, nn.Module)):
                    path = _import_path(value)
                    if path is None:
                        store.pop(key)
                    else:
                        store[key] = path

    @classmethod
    def load_from_checkpoint(cls, checkpoint_path, *args, **kwargs):
        """Lightning's ``load_from_checkpoint``; backbones skip their ``pretrained`` file meanwhile (the
        checkpoint holds the weights, see :mod:`vitlab.core.restore`)."""
        with restoring_from_checkpoint():
            return super().load_from_checkpoint(checkpoint_path, *args, **kwargs)

    # -- hooks subclasses may override -------------------------------------------------------------
    def layer_decay_spec(self) -> tuple[Callable[[str], int], int] | None:
        """``(layer_id(name), num_layers)`` for layer-wise lr decay; default from ``self.backbone``."""
        backbone = getattr(self, "backbone", None)
        if backbone is None or not hasattr(backbone, "layer_id"):
            return None
        depth = int(backbone.depth)

        def layer_id(name: str) -> int:
            if name.startswith("backbone."):
                return backbone.layer_id(name[len("backbone."):])
            return depth + 1  # heads train at the full lr

        return layer_id, depth

    def lr_scale(self) -> dict[str, float] | None:
        """Per-prefix lr multipliers (e.g. a 10x head); none by default."""
        return None

    # -- randomness: per-rank streams, exact resume ------------------------------------------------------
    def on_train_start(self) -> None:
        """Give every rank its own random stream, or put back the one a checkpoint saved.

        The model is built from the same seed on every rank (DDP also broadcasts it); after that, masks,
        drop-path and dropout must differ per rank, so the global RNGs are re-seeded with
        ``seed + global_rank`` (official MAE does the same). A resumed run instead restores the RNG states
        saved in the checkpoint (rank 0's; other ranks fold their rank and the step in), so a run
        resumed from a mid-epoch checkpoint draws what the uninterrupted run would have drawn.
        """
        rank = int(self.trainer.global_rank) if self._trainer is not None else 0
        saved = getattr(self, "_saved_rng_states", None)
        if saved is not None:
            set_rng_states(saved)
            self._saved_rng_states = None
            if rank:
                self._seed_all(int(torch.initial_seed()) + 1_000_003 * rank + int(self.global_step))
            return
        seed = os.environ.get("PL_GLOBAL_SEED")
        if seed is not None:
            self._seed_all(int(seed) + rank)

    @staticmethod
    def _seed_all(seed: int) -> None:
        seed %= 2**32
        random.seed(seed)
        torch.manual_seed(seed)
        try:
            import numpy as np

            np.random.seed(seed)
        except ImportError:  # pragma: no cover
            pass

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        checkpoint["vitlab_rng_states"] = collect_rng_states()

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        self._saved_rng_states = checkpoint.get("vitlab_rng_states")

    # -- Lightning ---------------------------------------------------------------------------------
    #: show per-step training values in the progress bar. Off: Lightning converts every progress-bar
    #: value with ``.item()`` after each step, a host sync that stalls a GPU pipeline; training values
    #: still reach the logger every ``log_every_n_steps`` and validation values the progress bar.
    step_prog_bar: bool = False

    def log(self, name: str, value: Any, prog_bar: bool = False, *args: Any, **kwargs: Any) -> None:
        """``LightningModule.log`` that keeps per-step training values out of the progress bar (see
        :attr:`step_prog_bar`)."""
        if (prog_bar and not self.step_prog_bar and kwargs.get("on_step") is not False
                and self._trainer is not None and self.trainer.training):
            prog_bar = False
        super().log(name, value, prog_bar, *args, **kwargs)

    def configure_model(self) -> None:
        """With ``compile``: compile every transformer block and dense head in place
        (:func:`vitlab.core.perf.compile_regions`), so each code path that runs them — ``forward``,
        ``forward_intermediates``, a method's encoder loop — runs compiled."""
        if self.compile_model and not getattr(self, "_compiled", False):
            self.compiled_regions = compile_regions(self, **(self.compile_options or {}))
            self._compiled = True

    def _steps(self) -> tuple[int, int]:
        total = int(self.trainer.estimated_stepping_batches)
        if not math.isfinite(total) or total <= 0:
            raise ValueError("set trainer.max_epochs or trainer.max_steps: the lr schedule needs a length")
        per_epoch = self.trainer.num_training_batches
        if not math.isfinite(per_epoch):
            per_epoch = total
        per_epoch = max(1, math.ceil(per_epoch / self.trainer.accumulate_grad_batches))
        warmup = int(round(self.warmup_epochs * per_epoch)) + int(self.warmup_steps)
        return total, warmup

    def configure_optimizers(self) -> dict[str, Any]:
        spec = self.layer_decay_spec() if self.layer_decay is not None else None
        if self.layer_decay is not None and spec is None:
            raise ValueError(f"{type(self).__name__}: layer_decay is set but the module has no layer ids")
        groups = param_groups(
            self,
            lr=self.lr,
            weight_decay=self.weight_decay,
            layer_decay=self.layer_decay,
            layer_id=spec[0] if spec else None,
            num_layers=spec[1] if spec else None,
            lr_scale=self.lr_scale(),
            decay_tokens=self.decay_tokens,
        )
        optimizer = self.optimizer_factory(groups)
        self._allow_clipping(optimizer)
        total, warmup = self._steps()
        sched = warmup_cosine_scheduler(optimizer, total, warmup, lr=self.lr, min_lr=self.min_lr)
        return {"optimizer": optimizer, "lr_scheduler": sched}

    def _allow_clipping(self, optimizer: torch.optim.Optimizer) -> None:
        """Let ``gradient_clip_val`` work with the fused AdamW under bf16-mixed.

        Lightning refuses to clip gradients under mixed precision when the optimizer unscales them itself
        (fused kernels advertise ``_step_supports_amp_scaling``). bf16 runs have no GradScaler, so there is
        nothing to unscale and clipping is exact; only fp16 (with a scaler) keeps Lightning's refusal.
        """
        trainer = self._trainer
        if trainer is None or not trainer.gradient_clip_val:
            return
        plugin = trainer.precision_plugin
        if isinstance(plugin, MixedPrecision) and plugin.scaler is None:
            optimizer._step_supports_amp_scaling = False


class BackboneTask(VitlabModule):
    """A downstream task on a ViT backbone, with an optional tuner.

    Args:
        backbone: the encoder, e.g. ``{class_path: vitlab.core.ViT, init_args: {size: small}}``; its
            ``pretrained`` argument loads timm, MAE or vitlab checkpoints.
        tuner: anything implementing :class:`vitlab.core.Tuner` (``vitlab.peft.LoRA`` ...). Applied once
            here, before the optimizer and checkpoint loading see the parameters.
        freeze_backbone: freeze every backbone weight (linear probing without a tuner).
        **kwargs: optimizer and schedule options of :class:`VitlabModule`.
    """

    def __init__(self, backbone: nn.Module, tuner: Tuner | None = None, freeze_backbone: bool = False,
                 **kwargs) -> None:
        super().__init__(**kwargs)
        if tuner is not None and freeze_backbone:
            raise ValueError("freeze_backbone and tuner are exclusive: the tuner decides what trains")
        if freeze_backbone:
            backbone.requires_grad_(False)
        if tuner is not None:
            backbone = tuner.apply(backbone)
            self._warn_if_tuning_random_weights(backbone, tuner)
        self.backbone = backbone
        self.tuner = tuner
        self.frozen_backbone = freeze_backbone

    @staticmethod
    def _warn_if_tuning_random_weights(backbone: nn.Module, tuner: Tuner) -> None:
        frozen = any(not p.requires_grad for p in backbone.parameters())
        if frozen and hasattr(backbone, "pretrained_source") and not backbone.pretrained_source \
                and not restoring():
            warnings.warn(
                f"{type(tuner).__name__} tunes a randomly initialised {type(backbone).__name__}: its frozen "
                "weights carry no pretrained features. Set `backbone.init_args.pretrained` to a checkpoint "
                "(vitlab-pretrain, MAE, timm or CroCo), e.g. one written by `vitlab fit --config "
                "configs/pretrain/quickstart.yaml`.",
                UserWarning, stacklevel=3,
            )

    def on_fit_start(self) -> None:
        total = count_parameters(self.backbone)
        trainable = count_parameters(self.backbone, trainable_only=True)
        stats = {"params/backbone_total": float(total), "params/backbone_trainable": float(trainable),
                 "params/backbone_trainable_pct": 100.0 * trainable / max(total, 1),
                 "params/model_trainable": float(count_parameters(self, trainable_only=True))}
        for logger in self.loggers:
            logger.log_metrics(stats, step=0)

    def train(self, mode: bool = True):
        super().train(mode)
        if self.frozen_backbone or not any(p.requires_grad for p in self.backbone.parameters()):
            # a backbone none of whose weights train (freeze_backbone, LinearProbe tuner) keeps dropout /
            # drop-path off, as in linear probing
            self.backbone.eval()
        return self
