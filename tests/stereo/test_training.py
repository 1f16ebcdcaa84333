"""A short supervised run of the stereo quickstart on SyntheticStereo: it matches.

SyntheticStereo has no monocular cue, so a model that ignores its right view can only learn the disparity
distribution. The quickstart's epipolar correlation (``corr_disparities``) gives it matching evidence from the
first step: 80 steps from scratch (about 10 s) halve the zero-disparity EPE (1.41 vs 2.97), and replacing the
right view by the left one (the ablation of ``benchmarks/stereo_eval.py --swap-right left``) makes the same model
2.2x worse (3.05).
"""

from __future__ import annotations

from pathlib import Path

import torch

from vitlab.core.cli import build_cli
from vitlab.stereo import StereoMetrics

CONFIG = Path(__file__).resolve().parents[2] / "configs" / "stereo" / "quickstart.yaml"
NET = "--model.init_args.model.init_args."


def test_short_training_matches(tmp_path, monkeypatch):
    monkeypatch.setenv("WANDB_MODE", "offline")
    cli = build_cli([
        "--config", str(CONFIG), "--trainer.accelerator", "cpu", "--trainer.default_root_dir", str(tmp_path),
        "--trainer.enable_progress_bar", "false", "--trainer.num_sanity_val_steps", "0",
        NET + "enc_embed_dim", "48", NET + "enc_depth", "3", NET + "enc_num_heads", "3",
        NET + "dec_embed_dim", "48", NET + "dec_depth", "2", NET + "dec_num_heads", "3",
        NET + "img_size", "[32, 64]", NET + "layer_dims", "[24, 24, 48, 48]", NET + "feature_dim", "32",
        NET + "last_dim", "16", NET + "corr_disparities", "24",
        "--data.init_args.size", "[32, 64]", "--data.init_args.batch_size", "8",
        "--data.init_args.train_samples", "160", "--data.init_args.val_samples", "32",
        "--trainer.max_epochs", "4", "--trainer.check_val_every_n_epoch", "4",
        "--model.init_args.lr", "2e-3", "--model.init_args.warmup_epochs", "0.2",
    ], run=False)
    cli.trainer.fit(cli.model, datamodule=cli.datamodule)
    assert cli.trainer.global_step == 80
    model = cli.model.eval()
    normal, same, zero = StereoMetrics("image"), StereoMetrics("image"), StereoMetrics("image")
    with torch.no_grad():
        for batch in cli.datamodule.val_dataloader():
            batch = cli.datamodule.on_after_batch_transfer(batch, 0)
            gt = batch["disparity"]
            normal.update(model(batch["image"], batch["right"])[:, :1], gt)
            same.update(model(batch["image"], batch["image"])[:, :1], gt)
            zero.update(torch.zeros_like(gt), gt)
    epe, epe_same, epe_zero = (float(m.compute()["epe"]) for m in (normal, same, zero))
    assert epe_zero > 2.5, epe_zero  # the held-back pairs have real disparities (up to 192 * W / 512 = 24 px)
    assert epe < 0.75 * epe_zero, f"EPE {epe:.3f} vs zero-disparity {epe_zero:.3f}"
    assert epe_same > 1.8 * epe, f"right = left: EPE {epe_same:.3f} vs {epe:.3f} with the right view"
