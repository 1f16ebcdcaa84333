"""The checkpoint behaviour comes from the CLI, whatever callbacks a config lists.

A config's stock ``lightning.pytorch.callbacks.ModelCheckpoint`` runs as ``vitlab.core.ModelCheckpoint``,
a fit without any checkpoint callback gets one that keeps ``last.ckpt``, and in every case ``last.ckpt``
holds the final step when fit ends, also between two validations.
"""

from __future__ import annotations

import contextlib
import logging
import sys
from pathlib import Path

import pytest
import torch
import yaml

from vitlab.core.callbacks import ModelCheckpoint
from vitlab.core.cli import build_cli
from vitlab.core.errors import ConfigError

REPO = Path(__file__).resolve().parents[2]
CONFIG = REPO / "configs" / "core" / "quickstart.yaml"

TINY = [
    "--trainer.accelerator", "cpu", "--trainer.enable_model_summary", "false",
    "--trainer.num_sanity_val_steps", "0", "--trainer.limit_val_batches", "2", "--trainer.log_every_n_steps", "1",
    "--model.init_args.backbone.init_args.embed_dim", "48", "--model.init_args.backbone.init_args.depth", "2",
    "--model.init_args.backbone.init_args.num_heads", "3", "--model.init_args.backbone.init_args.img_size", "32",
    "--model.init_args.head_kwargs", "{feature_dim: 16, layer_dims: [8, 16, 32, 48], last_dim: 8}",
    "--data.init_args.size", "32", "--data.init_args.batch_size", "2", "--data.init_args.num_workers", "0",
    "--data.init_args.train_samples", "16", "--data.init_args.val_samples", "4",
]


def _fit(tmp_path: Path, *extra: str):
    return build_cli(["fit", "--config", str(CONFIG), *TINY, "--trainer.default_root_dir", str(tmp_path / "runs"),
                      *extra]).trainer


@contextlib.contextmanager
def _messages(name: str):
    """The INFO messages logged to logger ``name`` inside the block (Lightning's loggers do not propagate)."""
    seen: list[str] = []

    class Keep(logging.Handler):
        def emit(self, record):
            seen.append(record.getMessage())

    log, handler = logging.getLogger(name), Keep(level=logging.INFO)
    level = log.level
    log.addHandler(handler)
    log.setLevel(logging.INFO)
    try:
        yield seen
    finally:
        log.removeHandler(handler)
        log.setLevel(level)


def _step(path: Path) -> int:
    return int(torch.load(path, map_location="cpu", mmap=True, weights_only=True)["global_step"])


@pytest.mark.parametrize("save_last", ["true", "link"])
def test_stock_checkpoint_runs_as_vitlab_and_last_holds_the_final_step(tmp_path, save_last):
    """Validation at steps 2 and 4, fit ends at 5: Lightning's class leaves last.ckpt at step 4 (or 2)."""
    with _messages("lightning.pytorch.utilities.rank_zero") as seen:
        trainer = _fit(tmp_path, "--trainer.max_steps", "5", "--trainer.val_check_interval", "2",
                       "--trainer.callbacks", "lightning.pytorch.callbacks.ModelCheckpoint",
                       "--trainer.callbacks.monitor", "val/mIoU", "--trainer.callbacks.mode", "max",
                       "--trainer.callbacks.save_last", save_last)
    assert trainer.global_step == 5
    ckpts = trainer.checkpoint_callbacks
    assert len(ckpts) == 1 and type(ckpts[0]) is ModelCheckpoint, ckpts
    assert sum("running it as vitlab.core.ModelCheckpoint" in m for m in seen) == 1, seen
    run = Path(trainer.default_root_dir)
    assert _step(run / "checkpoints" / "last.ckpt") == 5
    saved = yaml.safe_load((run / "config.yaml").read_text())["trainer"]["callbacks"]
    assert [c["class_path"] for c in saved] == ["vitlab.core.callbacks.ModelCheckpoint"]  # the run's own record


def test_fit_without_a_checkpoint_callback_keeps_last(tmp_path):
    """Lightning's default checkpoint has no last.ckpt; the CLI's keeps exactly one file, the final state."""
    trainer = _fit(tmp_path, "--trainer.max_steps", "3", "--trainer.callbacks", "[]")
    assert trainer.global_step == 3
    run = Path(trainer.default_root_dir)
    assert sorted(p.name for p in (run / "checkpoints").glob("*.ckpt")) == ["last.ckpt"]
    assert _step(run / "checkpoints" / "last.ckpt") == 3
    assert [type(c) for c in trainer.checkpoint_callbacks] == [ModelCheckpoint]


def test_checkpointing_off_stays_off(tmp_path):
    trainer = _fit(tmp_path, "--trainer.max_steps", "2", "--trainer.callbacks", "[]",
                   "--trainer.enable_checkpointing", "false")
    assert trainer.checkpoint_callbacks == []
    assert not list(Path(trainer.default_root_dir).rglob("*.ckpt"))


def test_a_foreign_checkpoint_subclass_is_refused(tmp_path, monkeypatch):
    (tmp_path / "own_ckpt.py").write_text(
        "from lightning.pytorch.callbacks import ModelCheckpoint\n\nclass OwnCheckpoint(ModelCheckpoint):\n    pass\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, "own_ckpt", raising=False)
    with pytest.raises(ConfigError, match=r"own_ckpt\.OwnCheckpoint derives from Lightning's ModelCheckpoint"):
        _fit(tmp_path, "--trainer.max_steps", "1", "--trainer.callbacks", "own_ckpt.OwnCheckpoint")


def test_model_summary_has_no_zero_flops_line(tmp_path):
    """Lightning counts FLOPs only with an ``example_input_array``; the CLI's summary drops the column of zeros."""
    from vitlab.core.callbacks import ModelSummary

    with _messages("lightning.pytorch.callbacks.model_summary") as seen:
        trainer = _fit(tmp_path, "--trainer.max_steps", "1", "--trainer.enable_model_summary", "true")
    assert sum(isinstance(cb, ModelSummary) for cb in trainer.callbacks) == 1
    table = "\n".join(seen)
    assert "Total params" in table and "backbone" in table
    assert "Flops" not in table and "FLOPs" not in table, table
