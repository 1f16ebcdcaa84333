"""What a user of `vitlab fit/validate/predict` relies on: run folders, resume, loud failures, writers."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from lightning.pytorch import Callback
from PIL import Image
from torch.utils._python_dispatch import TorchDispatchMode

from vitlab.core import NonFiniteGuard
from vitlab.core.callbacks import NonFiniteLossError
from vitlab.core.checkpoint_io import atomic_torch_save
from vitlab.core.cli import CheckpointMismatchError, build_cli
from vitlab.core.runs import RunFolderError

REPO = Path(__file__).resolve().parents[2]
CONFIGS = REPO / "configs" / "core"

TINY = [
    "--trainer.accelerator", "cpu", "--trainer.enable_model_summary", "false",
    "--trainer.log_every_n_steps", "2",
    "--model.init_args.backbone.init_args.embed_dim", "32",
    "--model.init_args.backbone.init_args.depth", "2",
    "--model.init_args.backbone.init_args.num_heads", "2",
    "--model.init_args.backbone.init_args.img_size", "32",
    "--data.init_args.size", "32", "--data.init_args.batch_size", "4", "--data.init_args.num_workers", "0",
    "--data.init_args.train_samples", "16", "--data.init_args.val_samples", "4",
    "--trainer.limit_val_batches", "1", "--trainer.num_sanity_val_steps", "0",
]


def args(sub: str, root: Path, config: str = "quickstart.yaml", *extra: str) -> list[str]:
    return [sub, "--config", str(CONFIGS / config), *TINY, "--trainer.default_root_dir", str(root), *extra]


@pytest.fixture(autouse=True)
def _fresh_run_env(monkeypatch):
    monkeypatch.delenv("VITLAB_RUN_DIR", raising=False)


def test_each_fit_gets_its_own_run_folder_and_last_resumes_the_newest(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    root = tmp_path / "runs"
    a = build_cli(args("fit", root, "quickstart.yaml", "--trainer.max_steps", "2"))
    monkeypatch.delenv("VITLAB_RUN_DIR")
    b = build_cli(args("fit", root, "quickstart.yaml", "--trainer.max_steps", "2"))
    assert Path(a.trainer.default_root_dir) == root / "version_0"
    assert Path(b.trainer.default_root_dir) == root / "version_1"
    for run in (root / "version_0", root / "version_1"):
        assert (run / "config.yaml").is_file() and (run / "checkpoints" / "last.ckpt").is_file()
        assert not list(run.glob("checkpoints/last-v*.ckpt"))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["runs"], "nothing lands in the working directory"
    monkeypatch.delenv("VITLAB_RUN_DIR")
    resumed = build_cli(args("fit", root, "quickstart.yaml", "--trainer.max_steps", "4", "--ckpt_path", "last"))
    assert Path(resumed.trainer.default_root_dir) == root / "version_1"
    assert resumed.trainer.global_step == 4
    monkeypatch.delenv("VITLAB_RUN_DIR")
    predicted = build_cli(args("validate", root, "quickstart.yaml", "--ckpt_path", str(root / "version_0")))
    assert Path(predicted.trainer.default_root_dir) == root / "version_0" / "validate" / "version_0"
    # the training run's config is untouched by the evaluation run
    assert yaml.safe_load((root / "version_0" / "config.yaml").read_text())["trainer"]["max_steps"] == 2


def test_ckpt_path_last_without_a_run_says_so(tmp_path):
    with pytest.raises(RunFolderError, match="no run under .* has checkpoints/last.ckpt"):
        build_cli(args("fit", tmp_path / "none", "quickstart.yaml", "--ckpt_path", "last"))


def test_checkpoint_of_another_class_is_refused_in_one_line(tmp_path):
    root = tmp_path / "runs"
    build_cli(args("fit", root, "quickstart.yaml", "--trainer.max_steps", "1"))
    ckpt = root / "version_0" / "checkpoints" / "last.ckpt"
    with pytest.raises(CheckpointMismatchError, match="SemanticSegmentation.*ImageClassification"):
        build_cli(args("validate", root, "classification.yaml", "--ckpt_path", str(ckpt)))


def test_corrupt_checkpoint_error_names_the_file(tmp_path):
    bad = tmp_path / "broken.ckpt"
    bad.write_bytes(b"PK\x03\x04 not really a checkpoint")
    with pytest.raises(RuntimeError, match="broken.ckpt"):
        build_cli(args("validate", tmp_path / "runs", "quickstart.yaml", "--ckpt_path", str(bad)))


def test_command_line_model_overrides_apply_with_ckpt_path(tmp_path, monkeypatch):
    root = tmp_path / "runs"
    build_cli(args("fit", root, "quickstart.yaml", "--trainer.max_steps", "1", "--model.init_args.min_lr", "1e-6"))
    ckpt = str(root / "version_0" / "checkpoints" / "last.ckpt")
    monkeypatch.delenv("VITLAB_RUN_DIR")
    plain = build_cli(args("validate", root, "quickstart.yaml", "--ckpt_path", ckpt))
    assert plain.model.min_lr == pytest.approx(1e-6)  # from the checkpoint, not the config file (1e-5)
    monkeypatch.delenv("VITLAB_RUN_DIR")
    over = build_cli(args("validate", root, "quickstart.yaml", "--ckpt_path", ckpt, "--model.init_args.min_lr", "2.5e-4"))
    assert over.model.min_lr == pytest.approx(2.5e-4)


def test_a_diverging_run_fails_loudly_and_writes_no_nan_checkpoint(tmp_path):
    root = tmp_path / "runs"
    with pytest.raises(NonFiniteLossError, match=r"global step \d+ \(epoch \d+, batch \d+\)"):
        build_cli(args("fit", root, "quickstart.yaml", "--trainer.max_steps", "8", "--model.init_args.lr", "1e30",
                       "--model.init_args.warmup_epochs", "0"))
    for ckpt in (root / "version_0").glob("checkpoints/*.ckpt"):
        state = torch.load(ckpt, map_location="cpu", weights_only=True)["state_dict"]
        assert all(torch.isfinite(v).all() for v in state.values() if v.is_floating_point()), ckpt


def test_fail_on_nonfinite_false_keeps_training(tmp_path):
    cli = build_cli(args("fit", tmp_path / "runs", "quickstart.yaml", "--trainer.max_steps", "4",
                         "--model.init_args.lr", "1e30", "--model.init_args.warmup_epochs", "0",
                         "--fail_on_nonfinite", "false"))
    assert cli.trainer.global_step == 4
    assert not any(isinstance(c, NonFiniteGuard) for c in cli.trainer.callbacks)


class _CountSyncs(TorchDispatchMode):
    def __init__(self):
        super().__init__()
        self.count = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        if func is torch.ops.aten._local_scalar_dense.default:
            self.count += 1
        return func(*args, **(kwargs or {}))


class _Trainer:  # the few attributes the guard reads
    def __init__(self, step):
        self.global_step, self.current_epoch, self.log_every_n_steps = step, 0, 5
        self.checkpoint_callbacks, self.callback_metrics = [], {}


def test_guard_reads_the_device_only_on_check_steps():
    guard = NonFiniteGuard()  # checks every log_every_n_steps = 5
    with _CountSyncs() as counter:
        for step in range(1, 5):
            loss = torch.tensor(float("nan") if step == 2 else 1.0)
            guard.on_train_batch_end(_Trainer(step), None, {"loss": loss}, None, step - 1)
    assert counter.count == 0, f"{counter.count} host syncs on steps that do not check"
    with pytest.raises(NonFiniteLossError, match=r"global step 2 \(epoch 0, batch 1\)"):
        guard.on_train_batch_end(_Trainer(5), None, {"loss": torch.tensor(1.0)}, None, 4)


def test_guard_names_the_first_bad_step():
    guard = NonFiniteGuard(check_every_n_steps=4)
    guard.on_train_batch_end(_Trainer(1), None, {"loss": torch.tensor(1.0)}, None, 0)
    guard.on_train_batch_end(_Trainer(2), None, {"loss": torch.tensor(float("inf")), "aux": torch.tensor(0.0)}, None, 1)
    guard.on_train_batch_end(_Trainer(3), None, {"loss": torch.tensor(float("nan"))}, None, 2)

    class M:
        pass

    with pytest.raises(NonFiniteLossError, match=r"global step 2 \(epoch 0, batch 1\)"):
        guard.on_train_batch_end(_Trainer(4), M(), {"loss": torch.tensor(1.0)}, None, 3)


def test_last_checkpoint_is_the_latest_even_when_the_metric_does_not_improve(tmp_path):
    # lr 1e-20 (0 is refused): val/mIoU never improves after epoch 0, so Lightning's own save_last would stay at epoch 0
    cli = build_cli(args("fit", tmp_path / "runs", "quickstart.yaml", "--trainer.max_epochs", "3",
                         "--model.init_args.lr", "1e-20", "--model.init_args.min_lr", "0.0"))
    last = Path(cli.trainer.default_root_dir) / "checkpoints" / "last.ckpt"
    assert torch.load(last, map_location="cpu", weights_only=True)["global_step"] == cli.trainer.global_step == 12


def test_atomic_save_keeps_the_old_file_and_leaves_no_temporaries(tmp_path):
    path = tmp_path / "last.ckpt"
    atomic_torch_save({"step": 1}, path)

    class Exploding:
        def __reduce__(self):
            raise RuntimeError("killed mid-write")

    with pytest.raises(RuntimeError, match="killed mid-write"):
        atomic_torch_save({"step": 2, "bad": Exploding()}, path)
    assert torch.load(path, weights_only=True) == {"step": 1}
    (tmp_path / ".last.ckpt.abc.tmp").write_bytes(b"orphan of a killed job")
    atomic_torch_save({"step": 3}, path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["last.ckpt"]


def test_resume_from_a_mid_epoch_checkpoint_equals_the_uninterrupted_run(tmp_path, monkeypatch):
    """10 steps (4 per epoch), checkpoints every 3, killed after step 7, resumed from step 6 (mid epoch 1)."""
    common = ["--trainer.max_steps", "10", "--trainer.deterministic", "true", "--seed_everything", "3",
              "--model.init_args.backbone.init_args.drop_path_rate", "0.2",  # draws from the global RNG
              "--data.init_args.train_samples", "16",
              "--trainer.callbacks+=vitlab.core.ModelCheckpoint",
              "--trainer.callbacks.every_n_train_steps", "3", "--trainer.callbacks.save_top_k", "-1",
              "--trainer.callbacks.filename", "step{step}"]
    straight = build_cli(args("fit", tmp_path / "a", "quickstart.yaml", *common))
    monkeypatch.delenv("VITLAB_RUN_DIR")

    class Kill(Callback):  # a job killed right after step 7 (its last checkpoint: step 6)
        def on_train_batch_end(self, trainer, *a):
            if trainer.global_step == 7:
                raise KeyboardInterrupt

    first = build_cli(args("fit", tmp_path / "b", "quickstart.yaml", *common)[1:], run=False)
    first.trainer.callbacks.insert(0, Kill())
    with pytest.raises(SystemExit):
        first.trainer.fit(first.model, datamodule=first.datamodule)
    ckpt = next((tmp_path / "b" / "version_0" / "checkpoints").glob("step*6*.ckpt"))
    monkeypatch.delenv("VITLAB_RUN_DIR")
    resumed = build_cli(args("fit", tmp_path / "b", "quickstart.yaml", *common, "--ckpt_path", str(ckpt)))
    assert resumed.trainer.global_step == straight.trainer.global_step == 10
    a, b = straight.model.state_dict(), resumed.model.state_dict()
    for k in a:
        torch.testing.assert_close(b[k], a[k], rtol=0, atol=0, msg=f"{k} differs after a mid-epoch resume")


def test_predict_writes_segmentation_and_depth_files(tmp_path, monkeypatch):
    root = tmp_path / "runs"
    build_cli(args("fit", root, "quickstart.yaml", "--trainer.max_steps", "1"))
    monkeypatch.delenv("VITLAB_RUN_DIR")
    build_cli(args("predict", root, "quickstart.yaml", "--ckpt_path", str(root / "version_0"),
                   "--data.init_args.predict_samples", "3"))
    out = root / "version_0" / "predict" / "version_0" / "predictions"
    ids = sorted(out.glob("0000*[0-9].png"))
    assert len(ids) == 3
    assert np.asarray(Image.open(ids[0])).max() < 7
    monkeypatch.delenv("VITLAB_RUN_DIR")
    droot = tmp_path / "depth"
    build_cli(args("fit", droot, "depth.yaml", "--trainer.max_steps", "1"))
    monkeypatch.delenv("VITLAB_RUN_DIR")
    build_cli(args("predict", droot, "depth.yaml", "--ckpt_path", str(droot / "version_0"),
                   "--data.init_args.predict_samples", "2"))
    out = droot / "version_0" / "predict" / "version_0" / "predictions"
    png = sorted(out.glob("*_depth.png"))
    npy = sorted(out.glob("*_depth.npy"))
    assert len(png) == len(npy) == 2
    mm = np.asarray(Image.open(png[0]))
    assert mm.dtype == np.uint16
    np.testing.assert_allclose(mm / 1000.0, np.load(npy[0]), atol=6e-4)


def test_missing_pretrained_file_does_not_block_loading_a_checkpoint(tmp_path):
    root = tmp_path / "runs"
    cli = build_cli(args("fit", root, "quickstart.yaml", "--trainer.max_steps", "1"))
    ckpt = torch.load(root / "version_0" / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)
    ckpt["hyper_parameters"]["backbone"]["init_args"]["pretrained"] = str(tmp_path / "moved_away.pth")
    torch.save(ckpt, tmp_path / "moved.ckpt")
    restored = type(cli.model).load_from_checkpoint(tmp_path / "moved.ckpt")
    for k, v in cli.model.state_dict().items():
        torch.testing.assert_close(restored.state_dict()[k], v, rtol=0, atol=0)


def test_backbone_without_trainable_weights_stays_in_eval_mode():
    from vitlab.core import ImageClassification, ViT

    class FreezeAll:  # any tuner that trains nothing in the backbone (e.g. vitlab.peft.LinearProbe)
        def apply(self, backbone):
            return backbone.requires_grad_(False)

    vit = ViT(embed_dim=32, depth=2, num_heads=2, img_size=32, drop_path_rate=0.1, pretrained=None)
    vit.pretrained_source = "weights.pth"  # no "random backbone" warning here
    model = ImageClassification(vit, num_classes=3, tuner=FreezeAll())
    model.train()
    assert not model.backbone.training and all(not m.training for m in model.backbone.modules())
    assert model.head.training
    x = torch.randn(2, 3, 32, 32)
    torch.testing.assert_close(model.backbone(x), model.backbone(x), rtol=0, atol=0)  # drop-path off


def test_depth_output_is_fp32_under_bf16_autocast():
    from vitlab.core import DepthEstimation, ViT

    model = DepthEstimation(ViT(embed_dim=32, depth=2, num_heads=2, img_size=32), head="linear")
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = model(torch.randn(1, 3, 32, 32))
        loss = model.loss(out, {"depth": torch.rand(1, 1, 32, 32) + 0.5})
    assert out.dtype == torch.float32 and loss.dtype == torch.float32


def test_peft_on_a_random_backbone_warns():
    from vitlab.core import SemanticSegmentation, ViT

    class FreezeAll:
        def apply(self, backbone):
            return backbone.requires_grad_(False)

    with pytest.warns(UserWarning, match="randomly initialised ViT"):
        SemanticSegmentation(ViT(embed_dim=32, depth=2, num_heads=2, img_size=32), num_classes=3,
                             head="linear", tuner=FreezeAll())


def test_plain_progress_lines_when_output_is_not_a_terminal(tmp_path, capfd):
    cli = build_cli(args("fit", tmp_path / "runs", "quickstart.yaml", "--trainer.max_steps", "4"))
    from vitlab.core import PlainProgressBar

    assert any(isinstance(c, PlainProgressBar) for c in cli.trainer.callbacks)
    out = capfd.readouterr().out
    lines = [ln for ln in out.splitlines() if ln.startswith("[epoch")]
    assert any("train/loss" in ln for ln in lines), out[-2000:]
    assert any("val/mIoU" in ln for ln in lines), out[-2000:]
    assert all("/4]" in ln for ln in lines), "every line shows the step total"
    assert "vitlab: run folder" in out
    assert "vitlab: checkpoints: " in out and "last.ckpt" in out.split("vitlab: checkpoints: ")[-1]
