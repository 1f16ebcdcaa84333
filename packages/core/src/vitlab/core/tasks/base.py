"""The LightningModule base every vitlab method derives from.

It owns what all recipes share, so no method re-implements it: the optimizer built from
:func:`vitlab.core.optim.param_groups` (no weight decay on 1-D parameters and tokens, optional
layer-wise lr decay), the per-step warmup + half-cycle cosine schedule, optional ``torch.compile``,
and the backbone + tuner wiring of the downstream tasks.
"""

from __future__ import annotations

import inspect
import logging
import math
import os
import random
import warnings
from collections.abc import Callable
from typing import Any, ClassVar

import torch
from lightning.pytorch import LightningModule
from lightning.pytorch.cli import OptimizerCallable
from lightning.pytorch.core.mixins.hparams_mixin import _given_hyperparameters
from lightning.pytorch.plugins.precision import MixedPrecision
from torch import nn

from vitlab.core.checkpoint_io import verify_checkpoint
from vitlab.core.errors import ConfigError
from vitlab.core.optim import make_adamw, param_groups, warmup_cosine_scheduler
from vitlab.core.perf import compile_regions
from vitlab.core.restore import restoring, restoring_from_checkpoint
from vitlab.core.tuner import Tuner, count_parameters

_log = logging.getLogger("vitlab")


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

    #: dotted path of the ``BasePredictionWriter`` that ``vitlab predict`` adds when the config names none;
    #: inherited by subclasses; None: ``predict`` asks for a writer under ``trainer.callbacks``
    default_writer: ClassVar[str | None] = None

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
        compile: ``torch.compile`` the network's transformer blocks, Swin / HRNet encoders and dense heads in
            place (regional compilation, :func:`vitlab.core.perf.compile_regions`; GPU runs; off by default
            because each new input shape costs a recompilation).
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
        self.check_optimization_args()

    def check_optimization_args(self, lr: float | None = None) -> None:
        """Refuse optimizer/schedule values that cannot train, naming the argument (:class:`ConfigError`).

        Called at construction and again when the schedule is built, with the peak lr actually used
        (pre-training derives it from ``base_lr``). A negative lr would climb the loss and exit 0.
        """
        lr = self.lr if lr is None else lr
        name = type(self).__name__

        def bad(key: str, value: Any, expected: str) -> ConfigError:
            return ConfigError(f"{name}: model.init_args.{key} must be {expected}, got {value!r}")

        def number(value: Any) -> bool:
            return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)

        if not number(lr) or lr <= 0:
            raise bad("lr", lr, "a finite number > 0 (the peak learning rate)")
        if not number(self.weight_decay) or self.weight_decay < 0:
            raise bad("weight_decay", self.weight_decay, "a finite number >= 0")
        if self.layer_decay is not None and (not number(self.layer_decay) or not 0 < self.layer_decay <= 1):
            raise bad("layer_decay", self.layer_decay, "null or a number in (0, 1]")
        if not number(self.warmup_epochs) or self.warmup_epochs < 0:
            raise bad("warmup_epochs", self.warmup_epochs, "a finite number >= 0")
        if not isinstance(self.warmup_steps, int) or isinstance(self.warmup_steps, bool) or self.warmup_steps < 0:
            raise bad("warmup_steps", self.warmup_steps, "an integer >= 0")
        if not number(self.min_lr) or self.min_lr < 0:
            raise bad("min_lr", self.min_lr, "a finite number >= 0")
        if self.min_lr > lr:
            raise ConfigError(f"{name}: model.init_args.min_lr {self.min_lr!r} is above the peak lr {lr!r}: "
                              "the cosine would raise the learning rate; expected min_lr <= lr")

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
        if isinstance(checkpoint_path, (str, os.PathLike)) and os.path.isfile(checkpoint_path):
            verify_checkpoint(checkpoint_path)  # a file vitlab wrote must match its content hash
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

    def data_num_classes(self, datamodule: Any) -> int | None:
        """How many classes the DataModule's targets for this module have (None: it does not say)."""
        try:
            value = getattr(datamodule, "num_classes", None)
        except NotImplementedError:
            return None
        return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else None

    def check_num_classes(self, datamodule: Any) -> None:
        """Refuse a module with fewer classes than its data: the loss would fail on the first label it
        cannot index (``IndexError: Target 4 is out of bounds``) without naming either setting."""
        ours = getattr(self, "num_classes", None)
        if ours is None:
            ours = self.hparams.get("num_classes") if hasattr(self, "hparams") else None
        theirs = self.data_num_classes(datamodule) if datamodule is not None else None
        if isinstance(ours, int) and theirs is not None and 0 < ours < theirs:
            raise ConfigError(
                f"{type(self).__name__}: model.init_args.num_classes is {ours} but the data has {theirs} classes "
                f"({type(datamodule).__name__}.num_classes), so labels {ours}..{theirs - 1} would be out of bounds; "
                f"expected model.init_args.num_classes >= {theirs}"
            )

    # -- randomness: per-rank streams, exact resume ------------------------------------------------------
    def on_train_start(self) -> None:
        """Give every rank its own random stream, or put back the one a checkpoint saved.

        The model is built from the same seed on every rank (DDP also broadcasts it); after that, masks,
        drop-path and dropout must differ per rank, so the global RNGs are re-seeded with
        ``seed + global_rank`` (official MAE does the same). A resumed run instead restores the RNG states
        saved in the checkpoint (rank 0's; other ranks fold their rank and the step in), so a run
        resumed from a mid-epoch checkpoint draws what the uninterrupted run would have drawn.
        """
        if getattr(self, "_resumed_optimizers", False):
            self._resumed_optimizers = False
            self._apply_optimizer_overrides()
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
        self._resumed_optimizers = bool(checkpoint.get("optimizer_states"))
        if self._resumed_optimizers and self._trainer is not None and self.trainer.state.fn == "fit":
            self._check_optimizer_layout(checkpoint["optimizer_states"][0], checkpoint)

    def _check_optimizer_layout(self, saved: dict[str, Any], checkpoint: dict[str, Any]) -> None:
        """Refuse, before torch does with a size mismatch, a resume whose arguments regroup the parameters."""
        try:
            fresh = self.optimizer_param_groups()
        except Exception:  # groups that need the trainer's data; torch still checks sizes when it restores
            return
        old = [len(g.get("params", ())) for g in saved.get("param_groups", ())]
        new = [len(g["params"]) for g in fresh]
        if old != new:
            hp, now = checkpoint.get("hyper_parameters") or {}, dict(self.hparams)
            changed = [f"{k} {hp[k]!r} -> {now[k]!r}" for k in sorted(set(hp) & set(now))
                       if isinstance(now[k], (int, float, str, bool, type(None))) and hp[k] != now[k]]
            raise ConfigError(
                f"{type(self).__name__}: the checkpoint's optimizer holds {len(old)} parameter groups of sizes "
                f"{old}, the current arguments build {len(new)} of sizes {new}"
                + (f" ({', '.join(changed)})" if changed else "")
                + ": its state cannot be resumed; expected the checkpoint's layer_decay, lr_scale, tuner and frozen "
                "parts", hint="keep those arguments as trained, or start a new fit from the weights "
                "(backbone.init_args.pretrained) without --ckpt_path")

    def _apply_optimizer_overrides(self) -> None:
        """After a resume, give the restored optimizers the lr and weight decay the current arguments ask for.

        Lightning restores each param group's ``lr`` / ``initial_lr`` / ``weight_decay`` and the scheduler's
        ``base_lrs`` from the checkpoint, so ``--ckpt_path last --model.init_args.lr 1e-5`` would keep the old
        lr. Groups whose values changed get the new peak (layer-decay and lr-scale multipliers included, as
        :meth:`optimizer_param_groups` computes them) at the schedule's current position; unchanged groups
        are not touched, so a plain resume stays bit-exact.
        """
        if self._trainer is None or not self.trainer.optimizers:
            return
        fresh = self.optimizer_param_groups()
        opt = self.trainer.optimizers[0]
        if len(fresh) != len(opt.param_groups):
            return
        sched = next((c.scheduler for c in self.trainer.lr_scheduler_configs
                      if getattr(c.scheduler, "optimizer", None) is opt), None)
        changed = []
        for i, (group, new) in enumerate(zip(opt.param_groups, fresh, strict=True)):
            old_peak = group.get("initial_lr", group["lr"])
            if new["lr"] != old_peak:
                lambdas = getattr(sched, "lr_lambdas", None)
                if lambdas is not None and callable(lambdas[i]):
                    factor = lambdas[i](sched.last_epoch)
                else:
                    factor = group["lr"] / old_peak if old_peak else 1.0
                group["lr"] = new["lr"] * factor
                if "lr_scale" in new:
                    group["lr_scale"] = new["lr_scale"]
                if "initial_lr" in group:
                    group["initial_lr"] = new["lr"]
                if sched is not None and i < len(getattr(sched, "base_lrs", ())):
                    sched.base_lrs[i] = new["lr"]
                    if i < len(getattr(sched, "_last_lr", ())):
                        sched._last_lr[i] = group["lr"]
                changed.append(f"lr {old_peak:.3g} -> {new['lr']:.3g}")
            if "weight_decay" in group and new["weight_decay"] != group["weight_decay"]:
                changed.append(f"weight_decay {group['weight_decay']:.3g} -> {new['weight_decay']:.3g}")
                group["weight_decay"] = new["weight_decay"]
        if changed and self.trainer.is_global_zero:
            _log.info("vitlab: resumed optimizer takes the new arguments (%s)", "; ".join(sorted(set(changed))))

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

    def setup(self, stage: str) -> None:
        """Attach :class:`vitlab.core.ddp.RankGuard` to the trainer (once, first): under DDP every rank ends
        each step with the same normalisation statistics and a dead rank is named, for every method and any
        Trainer, not only the CLI's."""
        if self._trainer is not None:
            from vitlab.core.ddp import attach_rank_guard

            attach_rank_guard(self.trainer)

    def configure_model(self) -> None:
        """With ``compile``: compile every transformer block, encoder region and dense head in place
        (:func:`vitlab.core.perf.compile_regions`), so each code path that runs them — ``forward``,
        ``forward_intermediates``, a method's encoder loop — runs compiled. First (every stage, right after
        ``setup``): :meth:`check_num_classes` against the trainer's DataModule."""
        if self._trainer is not None:
            self.check_num_classes(getattr(self.trainer, "datamodule", None))
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

    def check_schedule_length(self, total: int, warmup: int) -> None:
        """Refuse a warm-up in epochs that is not shorter than ``trainer.max_epochs``: the lr would never
        reach its peak. A run cut short by ``max_steps`` (a smoke test) may end inside its warm-up."""
        max_epochs = self.trainer.max_epochs if self._trainer is not None else None
        if self.warmup_epochs and max_epochs is not None and max_epochs > 0 and self.warmup_epochs >= max_epochs:
            raise ConfigError(
                f"{type(self).__name__}: model.init_args.warmup_epochs {self.warmup_epochs!r} is not shorter than "
                f"trainer.max_epochs {max_epochs}: the learning rate would never reach its peak; expected "
                "warmup_epochs < max_epochs"
            )

    def optimizer_param_groups(self) -> list[dict[str, Any]]:
        """The optimizer's parameter groups (lr, weight decay, ``names``) for the current arguments; the
        optimizer is built from them, and a resumed run re-reads them to apply changed values."""
        spec = self.layer_decay_spec() if self.layer_decay is not None else None
        if self.layer_decay is not None and spec is None:
            raise ConfigError(f"{type(self).__name__}: model.init_args.layer_decay is set but the module has no "
                              "layer ids; expected null")
        return param_groups(
            self,
            lr=self.lr,
            weight_decay=self.weight_decay,
            layer_decay=self.layer_decay,
            layer_id=spec[0] if spec else None,
            num_layers=spec[1] if spec else None,
            lr_scale=self.lr_scale(),
            decay_tokens=self.decay_tokens,
        )

    def configure_optimizers(self) -> dict[str, Any]:
        self.check_optimization_args(self.lr)
        optimizer = self.optimizer_factory(self.optimizer_param_groups())
        self._allow_clipping(optimizer)
        total, warmup = self._steps()
        self.check_schedule_length(total, warmup)
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
