"""A short supervised run on synthetic stereo: EPE on held-back pairs falls well below a zero-disparity guess.

The quickstart data is SyntheticStereo, where disparity cannot be read off the left image; 40 steps from scratch
learn its disparity distribution (about half the zero-disparity EPE), not matching. Whether a trained model
matches is measured by ``benchmarks/stereo_eval.py --swap-right left`` (too slow for CI).
"""

from __future__ import annotations

from pathlib import Path

import torch

from vitlab.core.cli import build_cli
from vitlab.stereo import StereoMetrics

CONFIG = Path(__file__).resolve().parents[2] / "configs" / "stereo" / "quickstart.yaml"
NET = "--model.init_args.model.init_args."


def test_short_training_beats_zero_disparity():
    cli = build_cli([
        "--config", str(CONFIG), "--trainer.accelerator", "cpu", "--trainer.logger", "false",
        "--trainer.enable_progress_bar", "false", "--trainer.enable_model_summary", "false",
        "--trainer.callbacks", "[]", "--trainer.enable_checkpointing", "false", "--trainer.num_sanity_val_steps", "0",
        NET + "enc_embed_dim", "48", NET + "enc_depth", "3", NET + "enc_num_heads", "3",
        NET + "dec_embed_dim", "48", NET + "dec_depth", "2", NET + "dec_num_heads", "3",
        NET + "img_size", "[32, 64]", NET + "layer_dims", "[24, 24, 48, 48]", NET + "feature_dim", "32",
        NET + "last_dim", "16",
        "--data.init_args.size", "[32, 64]", "--data.init_args.batch_size", "8",
        "--data.init_args.train_samples", "160", "--data.init_args.val_samples", "32",
        "--trainer.max_epochs", "2", "--trainer.check_val_every_n_epoch", "2",
        "--model.init_args.lr", "2e-3", "--model.init_args.warmup_epochs", "0.2",
    ], run=False)
    cli.trainer.fit(cli.model, datamodule=cli.datamodule)
    epe = float(cli.trainer.callback_metrics["val/epe"])
    zero = StereoMetrics("image")
    for batch in cli.datamodule.val_dataloader():
        zero.update(torch.zeros_like(batch["disparity"]), batch["disparity"])
    zero_epe = float(zero.compute()["epe"])
    assert zero_epe > 2.5, zero_epe  # the held-back pairs have real disparities (up to 192 * W / 512 = 24 px)
    assert epe < 0.75 * zero_epe, f"EPE {epe:.3f} vs zero-disparity {zero_epe:.3f}"
