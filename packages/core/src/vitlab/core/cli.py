"""``vitlab`` / ``lightning`` / ``python -m vitlab.core``: one LightningCLI for every package.

* Model and data are in subclass mode, so a config names any LightningModule / LightningDataModule by
  full class path or, for classes of installed vitlab packages, by short name (``SemanticSegmentation``).
  Short names resolve because :func:`load_plugins` imports every distribution registered in the
  ``vitlab.plugins`` entry-point group before parsing.
* Weights & Biases runs offline when no credentials are configured (``WANDB_MODE`` always wins), so a
  config with a ``WandbLogger`` trains on a laptop or a cluster node without network; ``wandb sync``
  uploads later.
* The resolved config is written next to the logs (overwriting, so re-runs in one ``save_dir`` never
  collide) and, with a ``WandbLogger``, stored in the run's config.
"""

from __future__ import annotations

import logging
import netrc
import os
import warnings
from importlib.metadata import entry_points

import yaml
from lightning.pytorch import LightningDataModule, LightningModule, Trainer
from lightning.pytorch.cli import ArgsType, LightningCLI, SaveConfigCallback
from lightning.pytorch.loggers import WandbLogger

from vitlab.core.plugins import check_config_plugins

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


class VitlabCLI(LightningCLI):
    """LightningCLI with vitlab's defaults (see the module docstring)."""

    def __init__(self, args: ArgsType = None, run: bool = True, **kwargs) -> None:
        kwargs.setdefault("seed_everything_default", 0)
        kwargs.setdefault("save_config_kwargs", {"overwrite": True})
        kwargs.setdefault("save_config_callback", VitlabSaveConfigCallback)
        kwargs.setdefault("parser_kwargs", {"description": "vitlab: ViTs for dense vision (LightningCLI)"})
        super().__init__(
            LightningModule,
            LightningDataModule,
            subclass_mode_model=True,
            subclass_mode_data=True,
            args=args,
            run=run,
            **kwargs,
        )


def build_cli(args: ArgsType = None, run: bool = True) -> VitlabCLI:
    """Parse ``args`` (default: ``sys.argv``), instantiate everything and, with ``run``, run the subcommand.

    With ``run=False`` the returned CLI holds the configured ``trainer``, ``model`` and ``datamodule``.
    """
    load_plugins()
    check_config_plugins(args)  # a class of an uninstalled vitlab package: one line naming the distribution
    configure_wandb_mode()
    return VitlabCLI(args=args, run=run)


def main(args: ArgsType = None) -> None:
    """Entry point of the ``vitlab`` and ``lightning`` console scripts and of ``python -m vitlab.core``."""
    build_cli(args)
