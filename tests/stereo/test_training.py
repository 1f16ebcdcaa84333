"""Short runs of the three stereo quickstarts on SyntheticStereo: each trained model uses its right view.

SyntheticStereo has no monocular cue, so a model that ignores its right view can only learn the disparity
distribution. Each quickstart (supervised, UniTT-Stereo, MaDis-Stereo) is shrunk the same way: tiny widths,
32 x 64 images (disparity up to 24 px), 400 steps of batch 8; the epipolar correlation covers the halved
range at half the stride, so its grid (16 x 32) is the quickstart's. On held-back pairs the test asserts that
the model beats zero disparity and that replacing the right view by the left one (the ablation of
``benchmarks/stereo_eval.py --swap-right left``) makes it several times worse; for UniTT / MaDis, that their
extra losses are logged, finite and decrease. Ratios measured (right = left EPE / EPE) are in the README.
"""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
from lightning.pytorch.callbacks import Callback

from vitlab.core.cli import build_cli
from vitlab.stereo import StereoMetrics

CONFIGS = sorted((Path(__file__).resolve().parents[2] / "configs" / "stereo").glob("*quickstart*.yaml"))
NET = "--model.init_args.model.init_args."
STEPS = 400
#: the losses each quickstart logs besides train/loss and train/loss_disp (UniTT/MaDis set corr_loss_weight)
EXTRA_LOSSES = {
    "StereoMatching": [],
    "UniTTStereo": ["train/loss_corr", "train/loss_rec", "train/loss_cons"],
    "MaDisStereo": ["train/loss_corr", "train/loss_rec", "train/loss_pseudo"],
}
#: smallest right = left / normal EPE ratio asserted (3x; see the README's "Measured" for the values)
MIN_RATIO = {"StereoMatching": 3.0, "UniTTStereo": 3.0, "MaDisStereo": 3.0}


class _LossLog(Callback):
    """Every step's logged ``train/*`` values."""

    def __init__(self) -> None:
        self.values: dict[str, list[float]] = {}

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        for k, v in trainer.callback_metrics.items():
            if k.startswith("train/"):
                self.values.setdefault(k, []).append(float(v))


def _shrunk_args(config: Path, root: Path) -> list[str]:
    args = [
        "--config", str(config), "--trainer.accelerator", "cpu", "--trainer.default_root_dir", str(root),
        "--trainer.enable_progress_bar", "false", "--trainer.num_sanity_val_steps", "0",
        NET + "enc_embed_dim", "48", NET + "enc_depth", "3", NET + "enc_num_heads", "3",
        NET + "dec_embed_dim", "48", NET + "dec_depth", "2", NET + "dec_num_heads", "3",
        NET + "img_size", "[32, 64]", NET + "layer_dims", "[24, 24, 48, 48]", NET + "feature_dim", "32",
        NET + "last_dim", "16", NET + "corr_disparities", "24", NET + "corr_stride", "2",
        "--data.init_args.size", "[32, 64]", "--data.init_args.batch_size", "8",
        "--data.init_args.train_samples", str(2 * STEPS), "--data.init_args.val_samples", "32",
        "--trainer.max_epochs", "4", "--trainer.check_val_every_n_epoch", "4",
        "--model.init_args.lr", "2e-3", "--model.init_args.warmup_epochs", "0.2",
    ]
    if "madis" in config.stem:  # the ramp-up spans the whole (shortened) run, as in the quickstart
        args += ["--model.init_args.pseudo_rampup_steps", str(STEPS)]
    return args


@pytest.mark.parametrize("config", CONFIGS, ids=[c.stem for c in CONFIGS])
def test_quickstart_uses_its_right_view(config, tmp_path, monkeypatch):
    monkeypatch.setenv("WANDB_MODE", "offline")
    cli = build_cli(_shrunk_args(config, tmp_path), run=False)
    log = _LossLog()
    cli.trainer.callbacks.append(log)
    cli.trainer.fit(cli.model, datamodule=cli.datamodule)
    assert cli.trainer.global_step == STEPS
    method = type(cli.model).__name__
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
    print(f"{config.stem}: EPE {epe:.3f}, right = left {epe_same:.3f} ({epe_same / epe:.2f}x), zero {epe_zero:.3f}")
    assert epe_zero > 2.5, epe_zero  # the held-back pairs have real disparities (up to 192 * W / 512 = 24 px)
    assert epe < 0.75 * epe_zero, f"EPE {epe:.3f} vs zero-disparity {epe_zero:.3f}"
    assert epe_same >= MIN_RATIO[method] * epe, f"right = left: EPE {epe_same:.3f} vs {epe:.3f} with the right view"
    q = STEPS // 4
    for key in EXTRA_LOSSES[method]:
        values = log.values.get(key)
        assert values is not None and len(values) == STEPS, f"{key} not logged every step"
        assert all(math.isfinite(v) for v in values), key
        first, last = sum(values[:q]) / q, sum(values[-q:]) / q
        assert last < first, f"{key}: mean of the first {q} steps {first:.4f}, of the last {last:.4f}"
