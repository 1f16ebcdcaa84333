"""Each stereo method fits through the CLI on tiny synthetic stereo; predict writes PFM / KITTI PNG / colour PNG;
UniTT ratio sampling; MaDis teacher bookkeeping."""

from __future__ import annotations

import random
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from vitlab.core.cli import build_cli, main
from vitlab.core.data.io import read_kitti_disparity, read_pfm
from vitlab.stereo import MaDisStereo, StereoMatching, UniTTStereo, sample_mask_ratio

REPO = Path(__file__).resolve().parents[2]
CONFIGS = REPO / "configs" / "stereo"
NET = "--model.init_args.model.init_args."
TINY = [
    "--trainer.accelerator", "cpu", "--trainer.logger", "false", "--trainer.enable_progress_bar", "false",
    "--trainer.enable_model_summary", "false", "--trainer.log_every_n_steps", "1",
    NET + "enc_embed_dim", "32", NET + "enc_depth", "2", NET + "enc_num_heads", "2",
    NET + "dec_embed_dim", "32", NET + "dec_depth", "2", NET + "dec_num_heads", "2",
    NET + "img_size", "[64, 64]", NET + "layer_dims", "[16, 16, 32, 32]", NET + "feature_dim", "16",
    NET + "last_dim", "8",
    "--data.init_args.size", "[64, 64]", "--data.init_args.batch_size", "4",
    "--data.init_args.train_samples", "8", "--data.init_args.val_samples", "4",
    "--data.init_args.predict_samples", "2",
]


def _args(config: str, tmp_path: Path, *extra: str) -> list[str]:
    return ["--config", str(CONFIGS / config), *TINY, "--trainer.default_root_dir", str(tmp_path),
            "--trainer.callbacks", "lightning.pytorch.callbacks.ModelCheckpoint",
            "--trainer.callbacks.dirpath", str(tmp_path / "ckpt"), "--trainer.callbacks.save_last", "true",
            *extra]


@pytest.mark.parametrize("config,cls", [("quickstart.yaml", StereoMatching), ("unitt_quickstart.yaml", UniTTStereo),
                                        ("madis_quickstart.yaml", MaDisStereo)])
def test_method_fits_through_the_cli(config, cls, tmp_path):
    cli = build_cli(["fit", *_args(config, tmp_path, "--trainer.max_steps", "3", "--trainer.limit_val_batches", "1.0")])
    assert isinstance(cli.model, cls) and cli.trainer.global_step == 3
    assert (tmp_path / "ckpt" / "last.ckpt").is_file()
    # the trained disparity range (SyntheticStereo: 192 * W / 512 px) travels with the checkpoint
    ckpt = torch.load(tmp_path / "ckpt" / "last.ckpt", map_location="cpu", weights_only=False)
    assert ckpt["train_max_disparity"] == pytest.approx(192 * 64 / 512)
    assert cls.load_from_checkpoint(tmp_path / "ckpt" / "last.ckpt").train_max_disparity == pytest.approx(24.0)
    m = cli.trainer.callback_metrics
    for k in ("val/epe", "val/d1", "val/bad3", "val/noc/epe", "train/loss"):
        assert k in m and torch.isfinite(m[k]), k
    if cls is MaDisStereo:
        assert int(cli.model.teacher.num_updates) == 3


def test_predict_writes_pfm_kitti_and_colour(tmp_path):
    out = tmp_path / "pred"
    main(["predict", "--config", str(CONFIGS / "quickstart.yaml"), *TINY,
          "--trainer.default_root_dir", str(tmp_path),
          "--trainer.callbacks", "vitlab.stereo.StereoPredictionWriter",
          "--trainer.callbacks.output_dir", str(out)])
    for i in range(2):
        d = read_pfm(out / f"{i:06d}.pfm")
        assert d.shape == (64, 64) and np.isfinite(d).all()
        k = read_kitti_disparity(out / f"{i:06d}_kitti.png")
        pos = d > 1 / 256
        assert np.allclose(k[pos], np.round(d[pos] * 256) / 256, atol=1 / 256)
        assert np.isinf(k[d <= 0]).all()  # negative predictions are clamped -> written as 0 = invalid
        assert np.asarray(Image.open(out / f"{i:06d}_color.png")).shape == (64, 64, 3)


def test_unitt_ratio_is_truncated_and_rounded():
    g = torch.Generator().manual_seed(0)
    rs = [sample_mask_ratio(0.0, 0.5, 0.25, 1.0, generator=g) for _ in range(400)]
    assert all(0.0 <= r <= 0.5 for r in rs)
    assert all(abs(r * 10 - round(r * 10)) < 1e-9 for r in rs)
    assert set(rs) == {0.0, 0.1, 0.2, 0.3, 0.4, 0.5}  # sigma 1 >> range: nearly uniform
    narrow = [sample_mask_ratio(0.3, 0.7, 0.5, 0.01, generator=g) for _ in range(50)]
    assert set(narrow) == {0.5}


def test_unitt_gate_and_zero_ratio(tiny_net):
    net = tiny_net(hook_mode="decoder")
    mod = UniTTStereo(net, mask_ratio=[0.0, 0.0, 0.0, 1.0])
    mod.log = mod.log_dict = lambda *a, **k: None
    g = torch.Generator().manual_seed(0)
    batch = {"image": torch.randn(2, 3, 64, 64, generator=g), "right": torch.randn(2, 3, 64, 64, generator=g),
             "disparity": torch.full((2, 1, 64, 64), 4.0)}
    loss0 = mod.training_step(batch, 0)
    assert mod.last_ratio == 0.0
    assert loss0.item() == pytest.approx(mod.disparity_loss(mod(batch["image"], batch["right"]), batch).item(),
                                         rel=1e-5)  # r = 0 -> L_disp only (the unmasked network)
    mod.mask_ratio = [0.5, 0.5, 0.5, 1.0]
    mod.gate_threshold = -1.0  # tanh(L_rec) > threshold -> disparity term gated off
    loss = mod.training_step(batch, 0)
    loss.backward()
    assert all(p.grad is None or p.grad.abs().sum() == 0 for p in net.head.parameters())
    with pytest.raises(ValueError, match="hook_mode='decoder'"):
        UniTTStereo(tiny_net())


def test_madis_teacher_frozen_and_updated_once_per_optimizer_step(tmp_path):
    cli = build_cli([*_args("madis_quickstart.yaml", tmp_path, "--trainer.max_steps", "2",
                            "--trainer.accumulate_grad_batches", "2", "--trainer.limit_val_batches", "0",
                            "--model.init_args.ema_decay", "0.5")], run=False)
    model = cli.model
    teacher = model.teacher.teacher
    assert not any(p.requires_grad for p in teacher.parameters()) and not teacher.training
    before = {k: v.clone() for k, v in teacher.state_dict().items()}
    cli.trainer.fit(model, datamodule=cli.datamodule)
    assert cli.trainer.global_step == 2 and int(model.teacher.num_updates) == 2  # 4 micro-batches, 2 steps
    after = teacher.state_dict()
    assert any(not torch.equal(before[k], after[k]) for k in before)
    opt_params = {id(p) for g in cli.trainer.optimizers[0].param_groups for p in g["params"]}
    assert not any(id(p) in opt_params for p in teacher.parameters())
    # EMA math: teacher = 0.5 teacher + 0.5 student after the last update
    student, t = model.net.state_dict(), model.teacher.teacher.state_dict()
    k = "dec_norm.weight"
    assert not torch.equal(student[k], t[k])


@pytest.mark.parametrize("config", ["croco_stereo.yaml", "croco_stereo_kitti.yaml", "unitt_stereo.yaml",
                                    "madis_stereo.yaml"])
def test_full_scale_configs_parse(config, capsys):
    """The GPU recipes validate against the class signatures (printing the config instantiates nothing)."""
    with pytest.raises(SystemExit) as e:
        main(["fit", "--config", str(CONFIGS / config), "--print_config"])
    assert e.value.code in (0, None)
    out = capsys.readouterr().out
    assert "vitlab.stereo.StereoDataModule" in out and "preset:" in out


def test_right_shift_augmentation_moves_the_match(tiny_net):
    mod = StereoMatching(tiny_net(), right_shift=5)
    right = torch.arange(10.0).view(1, 1, 1, 10).expand(1, 3, 2, 10)
    batch = {"image": right.clone(), "right": right, "disparity": torch.full((1, 1, 2, 10), 2.0)}
    random.seed(1)  # the shift is drawn on the host (Python RNG, seeded by seed_everything)
    out = mod.shift_right(batch)
    s = int(out["disparity"][0, 0, 0, 0] - 2)
    assert 1 <= s <= 5  # seed 1 draws a non-zero shift
    # the left pixel x matched right[x - 2]; it now matches right'[x - 2 - s] = right[x - 2]
    x = 8
    assert out["right"][0, 0, 0, x - 2 - s] == right[0, 0, 0, x - 2]


def test_predict_names_are_unique_per_input_root(tmp_path):
    """Two Middlebury roots with the same scene names: each writes into its own folder, nothing is overwritten."""
    import shutil

    import yaml

    roots = []
    for label in ("HalfSize", "FullSize"):
        root = tmp_path / "mb" / label
        shutil.copytree(REPO / "tests" / "data" / "middlebury2006", root)
        roots.append(root)
    ds = [{"class_path": "vitlab.stereo.MiddleburyStereo",
           "init_args": {"root": str(r), "version": "2006", "size": "half"}} for r in roots]
    data_cfg = tmp_path / "data.yaml"
    data_cfg.write_text(yaml.safe_dump({"data": {"class_path": "vitlab.stereo.StereoDataModule", "init_args": {
        "predict_datasets": ds, "eval_batch_size": 1, "num_workers": 0}}}))
    out = tmp_path / "pred"
    main(["predict", "--config", str(CONFIGS / "quickstart.yaml"), "--config", str(data_cfg),
          *TINY[:TINY.index("--data.init_args.size")],  # the tiny network, not the synthetic data
          "--trainer.default_root_dir", str(tmp_path),
          "--trainer.callbacks", "vitlab.stereo.StereoPredictionWriter",
          "--trainer.callbacks.output_dir", str(out)])
    written = sorted(str(p.relative_to(out)) for p in out.rglob("*.pfm"))
    assert written == ["00_HalfSize/middlebury2006__Aloe.pfm", "00_HalfSize/middlebury2006__Baby1__Illum1__Exp0.pfm",
                       "01_FullSize/middlebury2006__Aloe.pfm", "01_FullSize/middlebury2006__Baby1__Illum1__Exp0.pfm"]
    for p in out.rglob("*.pfm"):
        assert read_pfm(p).shape == (14, 26)
        assert (p.parent / (p.stem + "_kitti.png")).is_file() and (p.parent / (p.stem + "_color.png")).is_file()
