"""``vitlab`` / ``lightning`` / ``python -m vitlab.core``: one LightningCLI for every package.

* Model and data are in subclass mode, so a config names any LightningModule / LightningDataModule by
  full class path or, for classes of installed vitlab packages, by short name (``SemanticSegmentation``).
  Short names resolve because :func:`load_plugins` imports every distribution registered in the
  ``vitlab.plugins`` entry-point group before parsing.
* Weights & Biases runs offline when no credentials are configured (``WANDB_MODE`` always wins), so a
  config with a ``WandbLogger`` trains on a laptop or a cluster node without network; ``wandb sync``
  uploads later.
* Every invocation writes into a run folder of its own under ``trainer.default_root_dir``
  (:mod:`vitlab.core.runs`): logger files, ``checkpoints/``, ``config.yaml``, callback outputs. ``fit
  --ckpt_path last`` resumes the newest run; ``--ckpt_path <run folder>`` a chosen one.
* ``--ckpt_path`` is checked before anything is built: a missing or corrupt file, or a checkpoint of a
  different class than the config's model, is a one-line error (``validate`` / ``test`` / ``predict`` also
  accept a subclass of it: an evaluation config may name a base class). The module is rebuilt from the
  checkpoint's hyper-parameters, and ``--model.*`` overrides given on the command line are applied on top.
* Training fails loudly: :class:`~vitlab.core.callbacks.NonFiniteGuard` stops a run whose loss turns NaN
  (``fail_on_nonfinite: false`` turns it off), checkpoints are written atomically
  (:class:`~vitlab.core.checkpoint_io.AtomicCheckpointIO`), and when stdout is not a terminal progress is
  printed as plain lines (:class:`~vitlab.core.callbacks.PlainProgressBar`).
* The resolved config is written into the run folder and, with a ``WandbLogger``, stored in the run's config.
* ``vitlab data check <dataset> <root>`` checks a dataset copy instead (:mod:`vitlab.core.data.check`).
"""

from __future__ import annotations

import importlib
import logging
import netrc
import os
import re
import sys
import warnings
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any

import yaml
from lightning.pytorch import Callback, LightningDataModule, LightningModule, Trainer
from lightning.pytorch.callbacks import BasePredictionWriter, ModelCheckpoint
from lightning.pytorch.callbacks import ModelSummary as LightningModelSummary
from lightning.pytorch.callbacks.progress.progress_bar import ProgressBar
from lightning.pytorch.cli import ArgsType, LightningCLI, SaveConfigCallback
from lightning.pytorch.loggers import CSVLogger, TensorBoardLogger, WandbLogger
from lightning.pytorch.plugins.io import CheckpointIO

from vitlab.core import runs
from vitlab.core.callbacks import ModelSummary, NonFiniteGuard, PlainProgressBar
from vitlab.core.checkpoint_io import AtomicCheckpointIO, load_checkpoint_file
from vitlab.core.config_bases import expand_config_args
from vitlab.core.errors import CheckpointError, ConfigError, expected_failure, format_error, show_traceback
from vitlab.core.perf import configure_cuda_fast_paths
from vitlab.core.plugins import check_config_plugins
from vitlab.core.restore import restoring_from_checkpoint

log = logging.getLogger("vitlab")

PLUGIN_GROUP = "vitlab.plugins"


def load_plugins() -> list[str]:
    """Import every installed vitlab package (entry-point group ``vitlab.plugins``); returns their names."""
    loaded = []
    for ep in entry_points(group=PLUGIN_GROUP):
        try:
            ep.load()
            loaded.append(ep.name)
        except Exception as err:  # a broken optional package must not take the CLI down
            warnings.warn(f"vitlab: could not import plugin {ep.name!r} ({ep.value}): {err}", stacklevel=2)
    return loaded


def wandb_credentials_present() -> bool:
    """True if W&B could log in without asking: an API key in the environment or in ~/.netrc."""
    if os.environ.get("WANDB_API_KEY"):
        return True
    host = os.environ.get("WANDB_BASE_URL", "https://api.wandb.ai").split("://")[-1].rstrip("/")
    try:
        return netrc.netrc().authenticators(host) is not None
    except (FileNotFoundError, netrc.NetrcParseError, OSError):
        return False


def configure_wandb_mode() -> str | None:
    """Set ``WANDB_MODE=offline`` when it is unset and there are no credentials; returns the mode."""
    if "WANDB_MODE" not in os.environ and not wandb_credentials_present():
        os.environ["WANDB_MODE"] = "offline"
        log.info("vitlab: no W&B credentials found, logging offline (`wandb sync` uploads later)")
    return os.environ.get("WANDB_MODE")


class VitlabSaveConfigCallback(SaveConfigCallback):
    """Also stores the full resolved config in the W&B run (rank zero only)."""

    def save_config(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        for logger in trainer.loggers:
            if isinstance(logger, WandbLogger):
                config = yaml.safe_load(self.parser.dump(self.config, skip_none=False))
                logger.experiment.config.update({"cli": config}, allow_val_change=True)


class CheckpointMismatchError(CheckpointError, ValueError):
    """``--ckpt_path`` names a checkpoint of another class than the config's model (a ``ValueError`` too)."""


def _import_class(path: str | None) -> type | None:
    if not path or "." not in path:
        return None
    module, _, name = path.rpartition(".")
    try:
        return getattr(importlib.import_module(module), name)
    except (ImportError, AttributeError):
        return None


def _class_of(value: Any) -> type | None:
    path = value.get("class_path") if hasattr(value, "get") else None
    return _import_class(path) if isinstance(path, str) else None


def _silence_known_noise() -> None:
    """Hide third-party tips and warnings that say nothing about the user's run."""
    for pattern in (
        r".*isinstance.treespec, LeafSpec.*",
        r".*The number of training batches .* is smaller than the logging interval.*",
        r".*could not find the monitored key.*",
        r".*does not have many workers which may be a bottleneck.*",
        r".*The anonymous setting has no effect.*",
        r".*You're resuming from a checkpoint that ended before the epoch ended.*",
    ):
        warnings.filterwarnings("ignore", message=pattern)
    os.environ.setdefault("WANDB_SILENT", "true")

    class _DropTips(logging.Filter):
        def filter(self, record: logging.LogRecord) -> bool:
            message = record.getMessage()
            return not any(k in message for k in ("Tip:", "litlogger", "Skipping setting a default `ModelSummary`"))

    for name in ("lightning.pytorch.utilities.rank_zero", "lightning.pytorch", "lightning.fabric"):
        logging.getLogger(name).addFilter(_DropTips())


def finish_wandb_runs(trainer: Trainer, exit_code: int = 0) -> None:
    """Close the W&B runs of ``trainer``'s loggers, so the next run in this process starts its own."""
    for logger in trainer.loggers:
        run = getattr(logger, "_experiment", None) if isinstance(logger, WandbLogger) else None
        if run is not None and hasattr(run, "finish"):
            run.finish(exit_code=exit_code)
            logger._experiment = None


class VitlabCLI(LightningCLI):
    """LightningCLI with vitlab's defaults (see the module docstring)."""

    def __init__(self, args: ArgsType = None, run: bool = True, **kwargs) -> None:
        kwargs.setdefault("seed_everything_default", 0)
        kwargs.setdefault("save_config_kwargs", {"overwrite": True})
        kwargs.setdefault("save_config_callback", VitlabSaveConfigCallback)
        kwargs.setdefault("parser_kwargs", {"description": "vitlab: ViTs for dense vision (LightningCLI)"})
        self._raw_args = [str(a) for a in (sys.argv[1:] if args is None else args)] \
            if args is None or isinstance(args, (list, tuple)) else []
        self.run_dir: Path | None = None
        super().__init__(
            LightningModule,
            LightningDataModule,
            subclass_mode_model=True,
            subclass_mode_data=True,
            args=args,
            run=run,
            **kwargs,
        )

    def add_arguments_to_parser(self, parser) -> None:
        parser.add_argument(
            "--fail_on_nonfinite", type=bool, default=True,
            help="stop training with an error naming the step when a loss turns NaN/Inf (checked without "
                 "a per-step host sync)",
        )

    # -- --ckpt_path -------------------------------------------------------------------------------------
    def _subconfig(self):
        sub = self.config.get("subcommand")
        return (self.config[sub] if sub else self.config), sub

    def _parse_ckpt_path(self) -> None:
        """Resolve ``last`` / run folders, refuse a foreign or corrupt checkpoint, rebuild the model from it."""
        cfg, sub = self._subconfig()
        if sub is None or cfg.get("ckpt_path") is None:
            return
        root = Path(cfg.trainer.get("default_root_dir") or "runs")
        dirs = tuple(Path(cb.init_args.dirpath) for cb in cfg.trainer.get("callbacks") or []
                     if _class_of(cb) is not None and issubclass(_class_of(cb), ModelCheckpoint)
                     and cb.init_args.get("dirpath"))
        ckpt = runs.resolve_ckpt_path(cfg.ckpt_path, root, dirs)
        if ckpt is None:
            return
        cfg.ckpt_path = str(ckpt)
        hparams = dict(load_checkpoint_file(ckpt).get("hyper_parameters") or {})
        hparams.pop("_instantiator", None)
        ckpt_cls = _import_class(hparams.get("_class_path"))
        cfg_cls = _class_of(cfg.get("model"))
        # Evaluation rebuilds the model from the checkpoint, so a config may name a base class for any of its
        # methods (`zero_shot.yaml`: StereoMatching, which UniTTStereo / MaDisStereo extend). `fit` resumes a
        # training method and keeps requiring the config's own class.
        evaluates_subclass = (sub != "fit" and ckpt_cls is not None and cfg_cls is not None
                              and issubclass(ckpt_cls, cfg_cls))
        if ckpt_cls is not None and cfg_cls is not None and ckpt_cls is not cfg_cls and not evaluates_subclass:
            raise CheckpointMismatchError(
                f"checkpoint {ckpt} was saved by {ckpt_cls.__module__}.{ckpt_cls.__qualname__}, but the config "
                f"builds {cfg_cls.__module__}.{cfg_cls.__qualname__}: use the config the checkpoint was trained "
                "with, or load its backbone through `backbone.init_args.pretrained` instead"
            )
        if not hparams or "_class_path" not in hparams:
            return
        model = {"class_path": hparams.pop("_class_path"), "dict_kwargs": hparams}
        try:
            self.config = self.parser.parse_object({sub: {"model": model}}, self.config)
        except SystemExit:
            sys.stderr.write(f"vitlab: the hyper-parameters stored in {ckpt} do not parse\n")
            raise
        self._reapply_model_overrides(sub)

    def _reapply_model_overrides(self, sub: str) -> None:
        """``--model.*`` values from the command line win over the checkpoint's hyper-parameters."""
        overrides, args, i = [], self._raw_args, 0
        while i < len(args):
            a = args[i]
            if a.startswith("--model.") or a.startswith("--model="):
                if "=" in a:
                    overrides.append(a)
                elif i + 1 < len(args):
                    overrides += [a, args[i + 1]]
                    i += 1
            i += 1
        if not overrides:
            return
        sub_parser = self._subcommand_parsers[sub]
        self.config[sub] = sub_parser.parse_args(overrides, defaults=False, namespace=self.config[sub].clone())

    # -- run folder --------------------------------------------------------------------------------------
    def before_instantiate_classes(self) -> None:
        cfg, sub = self._subconfig()
        trainer = cfg.trainer
        root = Path(trainer.get("default_root_dir") or "runs")
        ckpt = cfg.get("ckpt_path")
        ckpt = Path(ckpt) if ckpt and Path(ckpt).is_file() else None
        run_dir = runs.choose_run_dir(sub or "fit", root, ckpt)
        os.environ[runs.RUN_DIR_ENV] = str(run_dir)  # processes spawned by DDP land in the same folder
        self.run_dir = run_dir
        trainer.default_root_dir = str(run_dir)
        from lightning.pytorch.utilities.rank_zero import rank_zero_info

        from vitlab.core.callbacks import ModelCheckpoint as VitlabModelCheckpoint
        from vitlab.core.errors import ConfigError

        if sub == "fit" and ckpt is None and cfg.get("ckpt_path") is None and run_dir.name.startswith("job-") \
                and (run_dir / "checkpoints" / "last.ckpt").is_file():
            # a requeued (preempted) scheduler job runs its command again: continue where it stopped
            ckpt = run_dir / "checkpoints" / "last.ckpt"
            cfg.ckpt_path = str(ckpt)
            rank_zero_info(f"vitlab: job folder {run_dir} holds last.ckpt: resuming from it")
        loggers = trainer.get("logger")
        for logger in loggers if isinstance(loggers, list) else [loggers]:
            self._place_logger(logger, run_dir, resuming=sub == "fit" and ckpt is not None)
        listed = trainer.get("callbacks")  # one callback given alone is not wrapped in a list
        for cb in listed if isinstance(listed, list) else [] if listed is None else [listed]:
            cls = _class_of(cb)
            if cls is ModelCheckpoint:  # Lightning's stock class: its last.ckpt can lag behind the final step
                cb.class_path = f"{VitlabModelCheckpoint.__module__}.{VitlabModelCheckpoint.__qualname__}"
                rank_zero_info("vitlab: trainer.callbacks lists lightning.pytorch.callbacks.ModelCheckpoint; running "
                               "it as vitlab.core.ModelCheckpoint (same arguments, last.ckpt always the latest state)")
            elif cls is not None and issubclass(cls, ModelCheckpoint) and not issubclass(cls, VitlabModelCheckpoint):
                raise ConfigError(
                    f"trainer.callbacks: {cls.__module__}.{cls.__qualname__} derives from Lightning's ModelCheckpoint, "
                    "whose last.ckpt can miss the final step; derive it from vitlab.core.ModelCheckpoint instead")
            if cls is not None and issubclass(cls, ModelCheckpoint) and cb.init_args.get("dirpath") is None:
                cb.init_args.dirpath = str(run_dir / "checkpoints")
        if self.subcommand is not None or sub:
            log.info("vitlab: run folder %s", run_dir)

    @staticmethod
    def _place_logger(logger: Any, run_dir: Path, resuming: bool) -> None:
        cls = _class_of(logger)
        if cls is None:
            return
        args = logger.init_args
        if issubclass(cls, (WandbLogger, TensorBoardLogger, CSVLogger)) and args.get("save_dir") in (None, "."):
            args.save_dir = str(run_dir)
        if issubclass(cls, (TensorBoardLogger, CSVLogger)):
            if args.get("name") in (None, "lightning_logs"):
                args.name = ""
            if args.get("version") is None:
                args.version = ""
        if issubclass(cls, WandbLogger) and resuming and args.get("id") is None:
            previous = runs.wandb_run_id(Path(args.save_dir))
            if previous:
                args.id = previous
                args.resume = "allow"  # a resumed fit continues its W&B run

    def _default_writer(self) -> BasePredictionWriter:
        """The writer the configured module declares (its ``default_writer``); an error naming the module
        when it declares none."""
        model_cfg = self._subconfig()[0].get("model")
        cls = _class_of(model_cfg)
        path = getattr(cls, "default_writer", None) if cls is not None else None
        if path:
            writer = _import_class(path)
            if writer is None:
                raise ConfigError(f"vitlab predict: {cls.__name__}.default_writer names {path!r}, which does not "
                                 "import (expected the dotted path of a BasePredictionWriter class)")
            return writer()
        name = cls.__name__ if cls is not None else "the model"
        raise ConfigError(
            f"vitlab predict: no prediction writer for {name}; add one under trainer.callbacks (e.g. "
            "vitlab.core.writers.DensePredictionWriter, vitlab.stereo.StereoPredictionWriter), otherwise "
            "predictions would be computed and thrown away"
        )

    def _run_subcommand(self, subcommand: str) -> None:
        from vitlab.core.preemption import PREEMPTED_EXIT_CODE, PreemptionCheckpoint, SIGTERMException

        if subcommand != "fit":  # an evaluation restores weights only: the training callbacks' states are not needed
            warnings.filterwarnings("ignore", message=r".*callbacks used to create the checkpoint need to be provided")
        failed = True
        try:
            super()._run_subcommand(subcommand)
            failed = False
        except SIGTERMException:  # Lightning's own: a SystemExit without a code, i.e. exit status 0
            done = [cb for cb in self.trainer.callbacks if isinstance(cb, PreemptionCheckpoint)]
            if self.trainer.is_global_zero:
                line = done[0].summary(self.run_dir) if done else "vitlab: stopped by SIGTERM"
                print(line, file=sys.stderr, flush=True)
            raise SystemExit(PREEMPTED_EXIT_CODE) from None
        finally:
            finish_wandb_runs(self.trainer, exit_code=1 if failed else 0)
        if subcommand == "fit" and self.trainer.is_global_zero:
            self._report_checkpoints()

    def _report_checkpoints(self) -> None:
        """One closing line per checkpoint callback: where the best and last weights are."""
        for cb in self.trainer.checkpoint_callbacks:
            if not isinstance(cb, ModelCheckpoint):
                continue
            parts = []
            if cb.best_model_path and cb.monitor:
                score = cb.best_model_score
                shown = f" ({cb.monitor} {float(score):.4g})" if score is not None else ""
                parts.append(f"best {cb.best_model_path}{shown}")
            if cb.last_model_path:
                parts.append(f"last {cb.last_model_path}")
            if parts:
                print("vitlab: checkpoints: " + "; ".join(parts), flush=True)

    def _instantiate_trainer(self, config: dict[str, Any], callbacks: list[Callback]) -> Trainer:
        config = dict(config)
        plugins = config.get("plugins")
        plugins = list(plugins) if isinstance(plugins, (list, tuple)) else ([plugins] if plugins else [])
        if not any(isinstance(p, CheckpointIO) for p in plugins):
            plugins.append(AtomicCheckpointIO())
        config["plugins"] = plugins
        cfg, _ = self._subconfig()
        callbacks = list(callbacks)
        configured = list(config.get("callbacks") or [])
        if cfg.get("fail_on_nonfinite", True) and not any(isinstance(c, NonFiniteGuard) for c in configured):
            callbacks.append(NonFiniteGuard())
        if self.subcommand == "predict" and not any(isinstance(c, BasePredictionWriter) for c in configured):
            callbacks.append(self._default_writer())
        if config.get("enable_model_summary", True) is not False \
                and not any(isinstance(c, LightningModelSummary) for c in configured):
            callbacks.append(ModelSummary())  # Lightning's table without its FLOPs column when nothing was counted
        wants_bar = config.get("enable_progress_bar", True) is not False
        if wants_bar and not sys.stdout.isatty() and not any(isinstance(c, ProgressBar) for c in configured):
            callbacks.append(PlainProgressBar())
        from vitlab.core.callbacks import ModelCheckpoint as VitlabModelCheckpoint
        from vitlab.core.preemption import PreemptionCheckpoint

        fitting = self._subconfig()[1] in (None, "fit")
        if fitting and config.get("enable_checkpointing", True) is not False \
                and not any(isinstance(c, ModelCheckpoint) for c in configured):
            # instead of Lightning's default checkpoint (no last.ckpt); top-k 0: last.ckpt is the only copy
            callbacks.append(VitlabModelCheckpoint(dirpath=str(Path(config.get("default_root_dir") or ".")
                                                               / "checkpoints"), save_last=True, save_top_k=0))
        if fitting:
            callbacks.append(PreemptionCheckpoint())  # SIGTERM: last.ckpt of the current step, SLURM requeue
        callbacks.append(importlib.import_module("vitlab.core.ddp").RankGuard())  # equal DDP ranks
        return super()._instantiate_trainer(config, callbacks)

    def instantiate_classes(self) -> None:
        cfg, _ = self._subconfig()
        if cfg.get("ckpt_path"):
            with restoring_from_checkpoint():  # the checkpoint holds the weights: skip `pretrained` files
                super().instantiate_classes()
        else:
            super().instantiate_classes()
        # The whole resolved config is logged under `cli` (W&B) and in `config.yaml`: the datamodule's own
        # hyper-parameters are not merged into the module's, so keys both own (batch_size ...) cannot clash.
        if getattr(self, "datamodule", None) is not None:
            self.datamodule._log_hyperparams = False
        for logger in self.trainer.loggers:
            init = getattr(logger, "_wandb_init", None) if isinstance(logger, WandbLogger) else None
            if isinstance(init, dict) and init.get("anonymous") is None:
                init.pop("anonymous", None)  # Lightning passes anonymous=None, which wandb 0.31 warns about on every run
        if self.run_dir is not None and self.trainer.is_global_zero and self.subcommand is not None:
            hint = f"  (resume: --ckpt_path {self.run_dir})" if self.subcommand == "fit" else ""
            print(f"vitlab: run folder {self.run_dir}{hint}", flush=True)


def build_cli(args: ArgsType = None, run: bool = True) -> VitlabCLI:
    """Parse ``args`` (default: ``sys.argv``), instantiate everything and, with ``run``, run the subcommand.

    With ``run=False`` the returned CLI holds the configured ``trainer``, ``model`` and ``datamodule``.
    """
    load_plugins()
    check_config_plugins(args)  # a class of an uninstalled vitlab package: one line naming the distribution
    configure_wandb_mode()
    _silence_known_noise()
    configure_cuda_fast_paths()  # TF32 matmuls / cuDNN autotuning on CUDA; nothing on CPU
    # `_base_:` in a config file becomes `--config <base> --config <file>`; YAML errors name the file
    given = sys.argv[1:] if args is None else args
    if isinstance(given, (list, tuple)):
        expanded = expand_config_args(given)
        if args is None and expanded != list(given):  # sys.argv itself stays as typed (DDP re-runs it)
            warnings.filterwarnings("ignore", message=r".*LightningCLI's args parameter is intended.*")
            args = expanded
        elif args is not None:
            args = expanded
    return VitlabCLI(args=args, run=run)


# a negative number in scientific notation (-1e-3, -.5E+2, -inf): argparse takes "-1e-3" for an option
_NEGATIVE_NUMBER = re.compile(r"^-(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?$|^-(inf|infinity|nan)$", re.I)


def _command_line(args: list[str]) -> list[str]:
    """``args`` as the parser should see them: ``--traceback`` dropped, and an option followed by a negative
    number (``--model.init_args.lr -1e-3``) joined into ``--key=-1e-3`` so the number stays its value."""
    out: list[str] = []
    i = 0
    while i < len(args):
        a = args[i]
        if a == "--traceback":
            i += 1
            continue
        if a.startswith("--") and "=" not in a and i + 1 < len(args) and _NEGATIVE_NUMBER.match(args[i + 1]):
            out.append(f"{a}={args[i + 1]}")
            i += 2
            continue
        out.append(a)
        i += 1
    return out


def main(args: ArgsType = None) -> None:
    """Entry point of the ``vitlab`` and ``lightning`` console scripts and of ``python -m vitlab.core``.

    An expected failure (a :class:`~vitlab.core.errors.VitlabError`: bad checkpoint, no run to resume,
    dataset format, class mismatch, non-finite loss, missing plugin, bad argument) prints one line and its
    hint on stderr and exits with status 1; ``--traceback`` or ``VITLAB_DEBUG=1`` re-raises it with the
    traceback. Any other exception is a bug and keeps its traceback.
    """
    given = [str(a) for a in (sys.argv[1:] if args is None else args)] \
        if args is None or isinstance(args, (list, tuple)) else None
    if given and given[0] == "data":  # `vitlab data check <dataset> <root>`: not a Trainer subcommand
        from vitlab.core.data.check import main as data_main

        raise SystemExit(data_main(given[1:]))
    debug = show_traceback(given)
    if given is not None:
        parsed = _command_line(given)
        if args is not None or parsed != given:
            if args is None:  # sys.argv itself stays as typed (DDP re-runs it, and this joins it again)
                warnings.filterwarnings("ignore", message=r".*LightningCLI's args parameter is intended.*")
            args = parsed
    try:
        build_cli(args)
    except Exception as err:
        expected = expected_failure(err)
        if expected is None or debug:
            raise
        sys.stdout.flush()
        sys.stderr.write("".join(f"{line}\n" for line in format_error(expected)))
        sys.stderr.flush()
        raise SystemExit(1) from None
