"""Every pretrain config fits through the vitlab CLI on tiny SyntheticScenes; the loss is finite and falls."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from vitlab.core.cli import build_cli

REPO = Path(__file__).resolve().parents[2]
CONFIGS = REPO / "configs" / "pretrain"
QUICKSTARTS = ["quickstart.yaml", "sbam.yaml", "mto_mae.yaml", "simmim.yaml", "mto_simmim.yaml", "sgmim.yaml",
               "noise.yaml"]

TINY = [
    "--trainer.accelerator", "cpu",
    "--trainer.logger", "false",
    "--trainer.enable_progress_bar", "false",
    "--trainer.enable_model_summary", "false",
    "--trainer.log_every_n_steps", "1",
    "--model.init_args.encoder.init_args.embed_dim", "32",
    "--model.init_args.encoder.init_args.depth", "2",
    "--model.init_args.encoder.init_args.num_heads", "2",
    "--model.init_args.encoder.init_args.patch_size", "8",
    "--model.init_args.encoder.init_args.img_size", "64",
    "--data.init_args.size", "64",
    "--data.init_args.batch_size", "4",
    "--data.init_args.num_workers", "0",
]


def tiny_args(config: str, tmp_path: Path, *extra: str) -> list[str]:
    args = ["--config", str(CONFIGS / config), *TINY, "--trainer.default_root_dir", str(tmp_path),
            "--data.init_args.train_samples", "8", "--data.init_args.val_samples", "4"]
    text = (CONFIGS / config).read_text()
    if "decoder_embed_dim" in text:
        args += ["--model.init_args.decoder_embed_dim", "32", "--model.init_args.decoder_depth", "1"]
    if "BlockRandomMask" in text:
        args += ["--model.init_args.masking.init_args.mask_patch_size", "16"]
    if "SalienceMask" in text:
        args += ["--model.init_args.masking.init_args.start_epoch", "0"]
    return [*args, *extra]


@pytest.mark.parametrize("config", QUICKSTARTS)
def test_config_fits_and_loss_falls(config, tmp_path):
    """8 steps on two fixed batches at lr ~2e-3: finite losses, the last steps below the first ones."""
    base_lr = "0.25" if "Sim" in (CONFIGS / config).read_text() or "SGMIM" in (CONFIGS / config).read_text() else "0.125"
    cli = build_cli(tiny_args(config, tmp_path, "--trainer.max_steps", "8", "--trainer.overfit_batches", "2",
                              "--trainer.limit_val_batches", "0", "--trainer.num_sanity_val_steps", "0",
                              "--trainer.callbacks", "[]", "--trainer.enable_checkpointing", "false",
                              "--model.init_args.base_lr", base_lr, "--model.init_args.warmup_epochs", "0"), run=False)
    model, losses = cli.model, []
    orig = model.training_step

    def training_step(batch, *args):
        out = orig(batch, *args)
        losses.append(float(out["loss"].detach()))
        return out

    model.training_step = training_step
    cli.trainer.fit(model, datamodule=cli.datamodule)
    assert cli.trainer.global_step == 8 and len(losses) == 8
    assert all(torch.isfinite(torch.tensor(losses)))
    first, last = sum(losses[:3]) / 3, sum(losses[-3:]) / 3
    assert last < 0.95 * first, f"{config}: loss did not fall: {losses}"


def test_lr_follows_the_effective_batch(tmp_path):
    """lr = base_lr * batch * accumulate * world_size / 256 (MAE rule), with validation and a checkpoint."""
    cli = build_cli(["fit", *tiny_args("quickstart.yaml", tmp_path, "--trainer.max_steps", "2",
                                       "--trainer.accumulate_grad_batches", "2", "--trainer.limit_val_batches", "1.0",
                                       "--model.init_args.base_lr", "1e-3",
                                       "--trainer.callbacks", "lightning.pytorch.callbacks.ModelCheckpoint",
                                       "--trainer.callbacks.dirpath", str(tmp_path / "ckpt"))])
    assert cli.model.effective_batch == 8
    assert cli.model.lr == pytest.approx(1e-3 * 8 / 256)
    assert "val/loss" in cli.trainer.callback_metrics
    assert list((tmp_path / "ckpt").glob("*.ckpt"))


@pytest.mark.parametrize("config", sorted(p.name for p in (CONFIGS / "imagenet").glob("*.yaml")))
def test_imagenet_recipes_build(config, tmp_path):
    """The full-scale recipes parse and build (shrunk encoder, CPU, a fake dataset root)."""
    text = (CONFIGS / "imagenet" / config).read_text()
    if "PseudoDepthFolderDataModule" in text:
        (tmp_path / "train" / "rgb" / "a").mkdir(parents=True)
    else:
        (tmp_path / "train" / "a").mkdir(parents=True)
    args = ["--config", str(CONFIGS / "imagenet" / config), "--trainer.accelerator", "cpu", "--trainer.devices", "1",
            "--trainer.strategy", "auto", "--trainer.precision", "32-true", "--trainer.logger", "false",
            "--trainer.callbacks", "[]", "--data.init_args.root", str(tmp_path),
            "--model.init_args.encoder.init_args.size", "tiny", "--model.init_args.encoder.init_args.depth", "1"]
    if "decoder_depth" in text:
        args += ["--model.init_args.decoder_depth", "1"]
    cli = build_cli(args, run=False)
    assert cli.trainer.max_epochs == 800
    assert cli.trainer.accumulate_grad_batches * cli.datamodule.batch_size * 8 == 4096
    assert cli.model.base_lr in (1.5e-4, 1e-4)
