"""Checkpoints vitlab writes carry a content hash that every vitlab load checks; resuming with changed
optimiser arguments reaches the restored optimiser; unusable checkpoint files get a sentence naming them."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from vitlab.core import checkpoint_io
from vitlab.core.checkpoint_io import load_checkpoint_file
from vitlab.core.cli import build_cli
from vitlab.core.errors import CheckpointError, ConfigError

CONFIGS = Path(__file__).resolve().parents[2] / "configs" / "core"

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


def cli_args(sub: str, root: Path, *extra: str, config: str = "quickstart.yaml") -> list[str]:
    return [sub, "--config", str(CONFIGS / config), *TINY, "--trainer.default_root_dir", str(root), *extra]


@pytest.fixture(autouse=True)
def _fresh_run_env(monkeypatch):
    monkeypatch.delenv("VITLAB_RUN_DIR", raising=False)


def _flip_a_byte(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x10  # inside the tensor payload: torch.load itself would not notice
    path.write_bytes(bytes(data))


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> Path:
    """One tiny fit (2 steps) whose checkpoint folder the tests below read (and copy before damaging)."""
    root = tmp_path_factory.mktemp("trained") / "runs"
    mp = pytest.MonkeyPatch()
    mp.delenv("VITLAB_RUN_DIR", raising=False)
    try:
        build_cli(cli_args("fit", root, "--trainer.max_steps", "2"))
    finally:
        mp.undo()
    return root / "version_0" / "checkpoints" / "last.ckpt"


def test_every_checkpoint_of_a_fit_has_a_hash_and_top_k_removal_takes_it_along(tmp_path):
    # a checkpoint every step, keep the 2 newest: the older files and their hashes are removed
    cli = build_cli(cli_args(
        "fit", tmp_path / "runs", "--trainer.max_steps", "4",
        "--trainer.callbacks+=vitlab.core.ModelCheckpoint", "--trainer.callbacks.every_n_train_steps", "1",
        "--trainer.callbacks.save_top_k", "2", "--trainer.callbacks.monitor", "step",
        "--trainer.callbacks.mode", "max", "--trainer.callbacks.filename", "s{step}"))
    folder = Path(cli.trainer.default_root_dir) / "checkpoints"
    ckpts = sorted(p.name for p in folder.glob("*.ckpt"))
    hashes = sorted(p.name for p in folder.glob("*.sha256"))
    assert sum(name.startswith("s") for name in ckpts) == 2, ckpts
    assert hashes == [f"{name}.sha256" for name in ckpts], (ckpts, hashes)
    for name in ckpts:  # `sha256sum -c` format, and the digest is the file's
        digest, listed = checkpoint_io.hash_path(folder / name).read_text().split()
        assert listed == name and digest == checkpoint_io.hash_file(folder / name)
        assert checkpoint_io.verify_checkpoint(folder / name)


def test_a_bit_flipped_checkpoint_is_refused_naming_the_file_on_every_load_path(trained, tmp_path, monkeypatch):
    run = tmp_path / "runs" / "version_0" / "checkpoints"
    run.mkdir(parents=True)
    bad = run / "last.ckpt"
    bad.write_bytes(trained.read_bytes())
    checkpoint_io.hash_path(bad).write_text(checkpoint_io.hash_path(trained).read_text())
    _flip_a_byte(bad)
    torch.load(bad, map_location="cpu", weights_only=True)  # the damage is invisible to torch
    with pytest.raises(CheckpointError, match=r"checkpoint .*last\.ckpt does not match its content hash"):
        build_cli(cli_args("validate", tmp_path / "runs", "--ckpt_path", str(bad)))
    monkeypatch.delenv("VITLAB_RUN_DIR", raising=False)
    with pytest.raises(CheckpointError, match="does not match its content hash"):
        build_cli(cli_args("fit", tmp_path / "runs", "--ckpt_path", "last", "--trainer.max_steps", "3"))
    with pytest.raises(CheckpointError, match="last.ckpt does not match"):
        load_checkpoint_file(bad)
    from vitlab.core import SemanticSegmentation

    with pytest.raises(CheckpointError, match="last.ckpt does not match"):
        SemanticSegmentation.load_from_checkpoint(bad)


def test_a_checkpoint_without_a_hash_still_loads(trained, tmp_path):
    plain = tmp_path / "other_tool.ckpt"
    plain.write_bytes(trained.read_bytes())  # no .sha256 beside it
    assert checkpoint_io.verify_checkpoint(plain) is False
    cli = build_cli(cli_args("validate", tmp_path / "runs", "--ckpt_path", str(plain)))
    assert cli.trainer.state.finished


def test_a_zero_byte_checkpoint_is_a_sentence_naming_it(tmp_path):
    empty = tmp_path / "empty.ckpt"
    empty.write_bytes(b"")
    with pytest.raises(CheckpointError, match=r"checkpoint .*empty\.ckpt is empty \(0 bytes\)"):
        build_cli(cli_args("validate", tmp_path / "runs", "--ckpt_path", str(empty)))
    with pytest.raises(CheckpointError, match=r"empty\.ckpt is empty"):
        load_checkpoint_file(empty)


def test_a_weights_file_given_as_ckpt_path_is_refused_naming_it(trained, tmp_path):
    weights = tmp_path / "weights.pt"
    torch.save(torch.load(trained, map_location="cpu", weights_only=True)["state_dict"], weights)
    with pytest.raises(CheckpointError, match=r"weights\.pt is not a Lightning training checkpoint"):
        build_cli(cli_args("fit", tmp_path / "runs", "--ckpt_path", str(weights), "--trainer.max_steps", "3"))


def _groups(cli) -> tuple[list[dict], object]:
    opt = cli.trainer.optimizers[0]
    sched = cli.trainer.lr_scheduler_configs[0].scheduler
    return opt.param_groups, sched


@pytest.mark.parametrize("override", [
    ["--model.init_args.lr", "1e-5", "--model.init_args.min_lr", "0", "--model.init_args.weight_decay", "0.01"],
    ["--model.init_args.layer_decay", "0.75"],
], ids=["lr-and-weight-decay", "layer-decay"])
def test_optimiser_arguments_given_with_ckpt_path_reach_the_restored_optimizer_and_schedule(override, tmp_path,
                                                                                           monkeypatch):
    root = tmp_path / "runs"
    decay = ["--model.init_args.layer_decay", "0.5", "--model.init_args.warmup_epochs", "0"]
    build_cli(cli_args("fit", root, "--trainer.max_steps", "2", *decay))
    monkeypatch.delenv("VITLAB_RUN_DIR")
    resumed = build_cli(cli_args("fit", root, "--trainer.max_steps", "3", "--ckpt_path", "last", *decay, *override))
    model = resumed.model
    groups, sched = _groups(resumed)
    fresh = model.optimizer_param_groups()  # what the current arguments ask for, multipliers included
    assert len({g["lr_scale"] for g in groups}) > 2, "layer decay gives several multipliers"
    for i, (g, want) in enumerate(zip(groups, fresh, strict=True)):
        assert g["initial_lr"] == pytest.approx(want["lr"], rel=1e-9) == pytest.approx(model.lr * want["lr_scale"])
        assert sched.base_lrs[i] == pytest.approx(want["lr"], rel=1e-9)
        assert g["lr"] == pytest.approx(sched.base_lrs[i] * sched.lr_lambdas[i](sched.last_epoch), rel=1e-9)
        assert g["weight_decay"] == pytest.approx(want["weight_decay"])
    assert sched.last_epoch == 3
    if "--model.init_args.lr" in override:
        assert model.lr == pytest.approx(1e-5) and max(g["weight_decay"] for g in groups) == pytest.approx(0.01)
    else:
        assert min(g["lr_scale"] for g in groups) == pytest.approx(0.75 ** 3)  # depth 2: embeddings at 0.75^3


def test_a_resume_whose_arguments_regroup_the_parameters_is_refused(tmp_path, monkeypatch):
    root = tmp_path / "runs"
    build_cli(cli_args("fit", root, "--trainer.max_steps", "2"))
    monkeypatch.delenv("VITLAB_RUN_DIR")
    with pytest.raises(ConfigError, match=r"parameter groups.*layer_decay None -> 0\.5"):
        build_cli(cli_args("fit", root, "--trainer.max_steps", "3", "--ckpt_path", "last",
                           "--model.init_args.layer_decay", "0.5"))
