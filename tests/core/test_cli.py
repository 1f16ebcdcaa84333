"""End-to-end runs of the CLI on tiny SyntheticScenes (CPU, seconds each)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml
from lightning.pytorch import Callback

from vitlab.core.cli import build_cli, configure_wandb_mode, load_plugins, main

REPO = Path(__file__).resolve().parents[2]
CONFIGS = REPO / "configs" / "core"

# A tiny backbone and data budget shared by every run: fast on 2 CPU cores.
TINY = [
    "--trainer.accelerator", "cpu",
    "--trainer.logger", "false",
    "--trainer.enable_progress_bar", "false",
    "--trainer.enable_model_summary", "false",
    "--trainer.log_every_n_steps", "1",
    "--model.init_args.backbone.init_args.embed_dim", "48",
    "--model.init_args.backbone.init_args.depth", "4",
    "--model.init_args.backbone.init_args.num_heads", "3",
    "--model.init_args.backbone.init_args.img_size", "64",
    "--data.init_args.size", "64",
    "--data.init_args.batch_size", "4",
    "--data.init_args.num_workers", "0",
]


def tiny_args(config: str, tmp_path: Path, *extra: str, train: int = 16, val: int = 8) -> list[str]:
    return ["--config", str(CONFIGS / config), *TINY,
            "--trainer.default_root_dir", str(tmp_path),
            "--data.init_args.train_samples", str(train), "--data.init_args.val_samples", str(val), *extra]


def ckpt_callback_args(tmp_path: Path) -> list[str]:
    # the configs' own callbacks (W&B images, checkpoint in runs/) are replaced by one in tmp_path
    return ["--trainer.callbacks", "lightning.pytorch.callbacks.ModelCheckpoint",
            "--trainer.callbacks.dirpath", str(tmp_path / "ckpt"), "--trainer.callbacks.save_last", "true"]


@pytest.mark.parametrize("config", ["quickstart.yaml", "depth.yaml", "classification.yaml", "linear_probe.yaml"])
def test_every_core_config_fits(config, tmp_path):
    cli = build_cli(["fit", *tiny_args(config, tmp_path, "--trainer.max_steps", "6",
                                       "--trainer.limit_val_batches", "2", *ckpt_callback_args(tmp_path))])
    assert cli.trainer.global_step == 6
    assert (tmp_path / "ckpt" / "last.ckpt").is_file()
    logged = cli.trainer.callback_metrics
    assert any(k.startswith("val/") for k in logged), f"no validation metric logged: {sorted(logged)}"
    assert all(torch.isfinite(v).all() for v in logged.values())
    # the checkpoint alone rebuilds the module (backbone included) with the same weights
    restored = type(cli.model).load_from_checkpoint(tmp_path / "ckpt" / "last.ckpt")
    for k, v in cli.model.state_dict().items():
        torch.testing.assert_close(restored.state_dict()[k], v, rtol=0, atol=0)


def test_loss_decreases_on_quickstart(tmp_path):
    """A few epochs on 32 fixed scenes: the training loss falls clearly."""
    losses = []
    cli = build_cli([*tiny_args("quickstart.yaml", tmp_path, "--trainer.max_epochs", "6",
                                       "--trainer.limit_val_batches", "2", "--trainer.callbacks", "[]",
                                       "--trainer.enable_checkpointing", "false",
                                       "--model.init_args.lr", "2e-3", train=32)], run=False)
    model = cli.model
    orig = model.training_step

    def training_step(batch, batch_idx):
        loss = orig(batch, batch_idx)
        losses.append(float(loss))
        return loss

    model.training_step = training_step
    cli.trainer.fit(model, datamodule=cli.datamodule)
    first, last = sum(losses[:8]) / 8, sum(losses[-8:]) / 8
    assert last < 0.8 * first, f"training loss did not fall: {first:.3f} -> {last:.3f}"


def test_short_class_names_resolve(tmp_path):
    load_plugins()
    cfg = {
        "model": {"class_path": "SemanticSegmentation",
                  "init_args": {"num_classes": 7, "head": "linear",
                                "backbone": {"class_path": "ViT", "init_args": {"size": "tiny"}}}},
        "data": {"class_path": "SyntheticScenesDataModule", "init_args": {"modalities": ["image", "semantic"]}},
        "trainer": {"max_steps": 2, "limit_val_batches": 2},
    }
    path = tmp_path / "short.yaml"
    path.write_text(yaml.safe_dump(cfg))
    args = ["fit", "--config", str(path), *TINY[:8], "--trainer.default_root_dir", str(tmp_path),
            "--data.init_args.size", "32", "--data.init_args.train_samples", "8",
            "--data.init_args.val_samples", "4", "--data.init_args.batch_size", "4",
            "--model.init_args.backbone.init_args.depth", "2",
            "--trainer.callbacks", "[]", "--trainer.enable_checkpointing", "false"]
    cli = build_cli(args)
    from vitlab.core import SemanticSegmentation, ViT

    assert isinstance(cli.model, SemanticSegmentation) and isinstance(cli.model.backbone, ViT)
    assert cli.trainer.global_step == 2


def test_main_returns_none_and_print_config(tmp_path, capsys):
    with pytest.raises(SystemExit) as exc:
        main(["fit", "--config", str(CONFIGS / "quickstart.yaml"), "--print_config"])
    assert exc.value.code == 0
    printed = yaml.safe_load(capsys.readouterr().out)
    assert printed["model"]["class_path"] == "vitlab.core.SemanticSegmentation"
    assert printed["model"]["init_args"]["num_classes"] == 7
    assert printed["seed_everything"] == 0


def test_console_scripts_and_module(tmp_path):
    bindir = Path(sys.executable).parent
    for cmd in ([str(bindir / "vitlab"), "--help"], [str(bindir / "lightning"), "fit", "--help"],
                [sys.executable, "-m", "vitlab.core", "--help"]):
        if not Path(cmd[0]).exists():
            pytest.fail(f"console script missing: {cmd[0]}")
        res = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
        assert res.returncode == 0, res.stderr[-2000:]
        assert "--config" in res.stdout


def test_wandb_offline_without_credentials(monkeypatch, tmp_path):
    monkeypatch.delenv("WANDB_MODE", raising=False)
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))  # no ~/.netrc
    assert configure_wandb_mode() == "offline"
    assert os.environ["WANDB_MODE"] == "offline"
    monkeypatch.setenv("WANDB_MODE", "disabled")
    assert configure_wandb_mode() == "disabled", "an explicit WANDB_MODE must win"
    monkeypatch.delenv("WANDB_MODE")
    monkeypatch.setenv("WANDB_API_KEY", "x" * 40)
    assert configure_wandb_mode() is None


@pytest.mark.slow
def test_quickstart_logs_to_wandb_offline(monkeypatch, tmp_path):
    """The quickstart's own logger and callbacks: offline W&B run with images, config and checkpoints."""
    monkeypatch.delenv("WANDB_MODE", raising=False)
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.chdir(tmp_path)  # the config's run root is runs/quickstart relative to the working dir
    monkeypatch.delenv("VITLAB_RUN_DIR", raising=False)
    args = ["fit", "--config", str(CONFIGS / "quickstart.yaml"), *TINY[:2], *TINY[6:],
            "--trainer.max_steps", "3", "--trainer.limit_val_batches", "2",
            "--data.init_args.train_samples", "12", "--data.init_args.val_samples", "8"]
    main(args)
    run = tmp_path / "runs" / "quickstart" / "version_0"  # the first run of this config
    runs = list((run / "wandb").glob("offline-run-*"))
    assert len(runs) == 1, "expected one offline W&B run"
    files = {p.name for p in runs[0].rglob("*")}
    assert any(name.endswith(".wandb") for name in files)
    assert any(name.endswith(".png") for name in files), "prediction images were not logged"
    assert (run / "checkpoints" / "last.ckpt").is_file()
    assert (run / "config.yaml").is_file()


def test_resume_matches_uninterrupted_run(tmp_path):
    """fit → stop after epoch 1 → `fit --ckpt_path last` ends with the same weights as one straight run."""
    common = ["--trainer.max_epochs", "2", "--trainer.limit_val_batches", "2",
              "--trainer.deterministic", "true", "--seed_everything", "3"]

    straight = build_cli(["fit", *tiny_args("quickstart.yaml", tmp_path / "a", *common,
                                            *ckpt_callback_args(tmp_path / "a"))])

    class Stop(Callback):  # stands in for a job killed at an epoch boundary
        def on_train_epoch_end(self, trainer, pl_module):
            trainer.should_stop = True

    first = build_cli([*tiny_args("quickstart.yaml", tmp_path / "b", *common,
                                         *ckpt_callback_args(tmp_path / "b"))], run=False)
    first.trainer.callbacks.append(Stop())
    first.trainer.fit(first.model, datamodule=first.datamodule)
    assert first.trainer.current_epoch == 1 and (tmp_path / "b" / "ckpt" / "last.ckpt").is_file()

    resumed = build_cli(["fit", *tiny_args("quickstart.yaml", tmp_path / "b", *common,
                                           *ckpt_callback_args(tmp_path / "b")), "--ckpt_path", "last"])
    assert resumed.trainer.global_step == straight.trainer.global_step
    a, b = straight.model.state_dict(), resumed.model.state_dict()
    assert a.keys() == b.keys()
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=0, atol=0, msg=f"{k} differs after resume")
