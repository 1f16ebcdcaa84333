"""Expected failures reach the user as one line (plus a hint), exit 1, and a traceback only on request;
arguments that cannot train are refused naming the argument."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from torch import nn
from torch.utils.data import DataLoader, Dataset

from vitlab.core import errors
from vitlab.core.cli import build_cli, load_plugins, main
from vitlab.core.errors import ConfigError, VitlabError

REPO = Path(__file__).resolve().parents[2]
CONFIGS = REPO / "configs"
QUICKSTART = CONFIGS / "core" / "quickstart.yaml"

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


def cli_args(sub: str, root: Path, *extra: str, config: Path = QUICKSTART) -> list[str]:
    return [sub, "--config", str(config), *TINY, "--trainer.default_root_dir", str(root), *extra]


@pytest.fixture(autouse=True)
def _fresh_env(monkeypatch):
    monkeypatch.delenv("VITLAB_RUN_DIR", raising=False)
    monkeypatch.delenv("VITLAB_DEBUG", raising=False)


def run_main(argv: list[str], capfd) -> tuple[int, list[str]]:
    """``vitlab <argv>`` in this process: its exit status and the lines it wrote to stderr."""
    capfd.readouterr()
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    err = capfd.readouterr().err
    return exit_info.value.code, [ln for ln in err.splitlines() if ln.strip()]


# -- every vitlab error class ----------------------------------------------------------------------------
def _error_classes() -> list[type]:
    load_plugins()  # every installed package's error classes
    import vitlab.core.callbacks
    import vitlab.core.checkpoint_io
    import vitlab.core.plugins
    import vitlab.core.runs  # noqa: F401

    seen, todo = [], [VitlabError]
    while todo:
        cls = todo.pop()
        if cls not in seen:
            seen.append(cls)
            todo.extend(cls.__subclasses__())
    return sorted(seen, key=lambda c: f"{c.__module__}.{c.__qualname__}")


def test_the_expected_failures_are_vitlab_errors_and_keep_their_builtin_bases():
    from vitlab.core.callbacks import NonFiniteLossError
    from vitlab.core.cli import CheckpointMismatchError
    from vitlab.core.plugins import MissingPluginError
    from vitlab.core.runs import RunFolderError

    for cls, builtin in ((RunFolderError, ValueError), (CheckpointMismatchError, ValueError),
                         (NonFiniteLossError, FloatingPointError), (MissingPluginError, SystemExit),
                         (errors.DatasetFormatError, ValueError), (ConfigError, ValueError),
                         (errors.CheckpointError, RuntimeError)):
        assert issubclass(cls, VitlabError) and issubclass(cls, builtin), cls
        assert cls in _error_classes()


class _Failing(Dataset):
    def __init__(self, cls: type) -> None:
        self.cls = cls

    def __len__(self) -> int:
        return 4

    def __getitem__(self, i: int):
        raise self.cls("sample 3 of /data/x: bad\nvalues above 255", hint="re-export the file")


@pytest.mark.parametrize("cls", _error_classes(), ids=lambda c: c.__qualname__)
def test_every_vitlab_error_is_one_line_and_a_hint_also_from_a_dataloader_worker(cls):
    direct = cls("sample 3 of /data/x: bad\nvalues above 255", hint="re-export the file")
    expected = ["vitlab: sample 3 of /data/x: bad values above 255", "hint: re-export the file"]
    assert errors.format_error(direct) == expected
    with pytest.raises(cls) as caught:  # torch re-raises the worker's class with the worker's traceback
        next(iter(DataLoader(_Failing(cls), num_workers=1)))
    assert "Original Traceback" in str(caught.value)
    assert errors.format_error(caught.value) == expected


def test_a_zero_byte_message_does_not_break_the_formatter():
    assert errors.format_error(errors.CheckpointError("")) == ["vitlab: CheckpointError"]


# -- through main(): one line on stderr, exit 1 ----------------------------------------------------------
def test_no_run_to_resume_is_one_line(tmp_path, capfd):
    code, lines = run_main(cli_args("fit", tmp_path / "none", "--ckpt_path", "last"), capfd)
    assert code == 1
    assert len(lines) == 1 and lines[0].startswith("vitlab: --ckpt_path last: no run under"), lines


def test_a_diverging_run_is_one_line(tmp_path, capfd):
    code, lines = run_main(cli_args("fit", tmp_path / "runs", "--trainer.max_steps", "6",
                                    "--model.init_args.lr", "1e30", "--model.init_args.warmup_epochs", "0"), capfd)
    assert code == 1
    assert len(lines) <= 2 and "global step" in lines[0], lines


def test_a_checkpoint_of_another_class_is_one_line(tmp_path, capfd):
    root = tmp_path / "runs"
    build_cli(cli_args("fit", root, "--trainer.max_steps", "1"))
    os.environ.pop("VITLAB_RUN_DIR", None)
    code, lines = run_main(cli_args("validate", root, "--ckpt_path", str(root / "version_0"),
                                    config=CONFIGS / "core" / "classification.yaml"), capfd)
    assert code == 1
    assert len(lines) == 1 and "SemanticSegmentation" in lines[0] and "ImageClassification" in lines[0], lines


def test_a_missing_plugin_is_one_line(tmp_path, capfd, monkeypatch):
    from vitlab.core import plugins

    monkeypatch.setattr(plugins, "_installed", lambda package: package != "uda")  # as if vitlab-uda were absent
    code, lines = run_main(["fit", "--config", str(CONFIGS / "uda" / "quickstart.yaml"),
                            "--trainer.default_root_dir", str(tmp_path)], capfd)
    assert code == 1
    assert len(lines) == 1 and "vitlab-uda" in lines[0], lines


def test_a_dataset_error_in_a_loader_worker_is_one_line(tmp_path, capfd, monkeypatch):
    from vitlab.core.data.synthetic import SyntheticScenes

    def broken(self, index):  # a reader refusing a file, inside a worker process
        raise errors.DatasetFormatError(f"scene_{index}.png: 16-bit grey image, expected 8-bit RGB",
                                        hint="convert the file to 8-bit RGB")

    monkeypatch.setattr(SyntheticScenes, "__getitem__", broken)
    code, lines = run_main(cli_args("fit", tmp_path / "runs", "--trainer.max_steps", "1",
                                    "--data.init_args.num_workers", "2"), capfd)
    assert code == 1
    assert len(lines) == 2, lines
    assert lines[0].startswith("vitlab: scene_") and "16-bit grey image, expected 8-bit RGB" in lines[0], lines
    assert lines[1] == "hint: convert the file to 8-bit RGB"


def test_traceback_on_request_in_process(tmp_path, capfd, monkeypatch):
    from vitlab.core.runs import RunFolderError

    with pytest.raises(RunFolderError):
        main(cli_args("fit", tmp_path / "none", "--ckpt_path", "last", "--traceback"))
    monkeypatch.setenv("VITLAB_DEBUG", "1")
    with pytest.raises(RunFolderError):
        main(cli_args("fit", tmp_path / "none", "--ckpt_path", "last"))


@pytest.mark.parametrize("how", ["plain", "--traceback", "VITLAB_DEBUG=1"])
def test_the_vitlab_command_prints_one_line_and_exits_1(tmp_path, how):
    """The console script itself: no traceback unless asked for."""
    empty = tmp_path / "empty.ckpt"
    empty.write_bytes(b"")
    env = {k: v for k, v in os.environ.items() if k not in ("VITLAB_RUN_DIR", "VITLAB_DEBUG")}
    env.update(OMP_NUM_THREADS="1", WANDB_MODE="offline")
    cmd = [str(Path(sys.executable).with_name("vitlab")), "validate", "--config", str(QUICKSTART),
           "--trainer.default_root_dir", str(tmp_path / "runs"), "--ckpt_path", str(empty)]
    if how == "--traceback":
        cmd.append("--traceback")
    elif how == "VITLAB_DEBUG=1":
        env["VITLAB_DEBUG"] = "1"
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=tmp_path, timeout=300)
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert proc.returncode == 1, proc.stderr[-2000:]
    if how == "plain":
        assert lines == [f"vitlab: checkpoint {empty} is empty (0 bytes): the write that made it never finished",
                         "hint: resume from another checkpoint of the run (e.g. <run>/checkpoints/last.ckpt)"], lines
    else:
        assert "Traceback (most recent call last)" in proc.stderr and "CheckpointError" in lines[-2], lines[-4:]


# -- unclear messages ------------------------------------------------------------------------------------
def test_a_negative_number_after_a_space_is_a_value(tmp_path, capfd):
    capfd.readouterr()
    with pytest.raises(SystemExit) as exit_info:
        main(cli_args("fit", tmp_path / "runs", "--model.init_args.min_lr", "-1e-6", "--print_config"))
    assert exit_info.value.code in (0, None)
    assert "min_lr: -1.0e-06" in capfd.readouterr().out
    code, lines = run_main(cli_args("fit", tmp_path / "runs", "--model.init_args.lr", "-1e-3"), capfd)
    assert code == 1
    assert len(lines) == 1 and "model.init_args.lr must be a finite number > 0" in lines[0], lines
    assert "got -0.001" in lines[0]


class _Task:  # how every task module takes its backbone
    def __init__(self, backbone: nn.Module) -> None:
        self.backbone = backbone


@pytest.mark.parametrize("value", ["null", "None"])
def test_swin_accepts_pretrained_null_like_the_vit(value):
    from jsonargparse import ArgumentParser

    from vitlab.core.backbones.swin import Swin

    parser = ArgumentParser()
    parser.add_class_arguments(_Task, "model")
    cfg = parser.parse_args(["--model.backbone", "vitlab.core.backbones.swin.Swin",
                             "--model.backbone.init_args.pretrained", value,
                             "--model.backbone.init_args.embed_dim", "16", "--model.backbone.init_args.img_size", "64",
                             "--model.backbone.init_args.depths", "[1, 1, 1, 1]",
                             "--model.backbone.init_args.num_heads", "[1, 1, 1, 1]"])
    swin = parser.instantiate(cfg).model.backbone
    assert isinstance(swin, Swin)


def test_num_classes_below_the_datas_is_refused_naming_both(tmp_path, capfd):
    code, lines = run_main(cli_args("fit", tmp_path / "runs", "--trainer.max_steps", "1",
                                    "--model.init_args.num_classes", "4"), capfd)
    assert code == 1
    assert lines == ["vitlab: SemanticSegmentation: model.init_args.num_classes is 4 but the data has 7 classes "
                     "(SyntheticScenesDataModule.num_classes), so labels 4..6 would be out of bounds; expected "
                     "model.init_args.num_classes >= 7"], lines


# -- optimiser arguments that cannot train ---------------------------------------------------------------
def _quickstarts() -> list[str]:
    return sorted(str(p.relative_to(CONFIGS)) for p in CONFIGS.glob("*/quickstart*.yaml"))


@pytest.mark.parametrize("config", _quickstarts())
def test_every_quickstart_refuses_a_negative_lr_at_construction(config, tmp_path, capfd):
    code, lines = run_main(["fit", "--config", str(CONFIGS / config), "--trainer.default_root_dir", str(tmp_path),
                            "--model.init_args.lr=-1e-3"], capfd)
    assert code == 1
    assert len(lines) == 1 and "model.init_args.lr must be a finite number > 0" in lines[0], lines


@pytest.mark.parametrize(("key", "value", "expected"), [
    ("lr", 0.0, "lr must be a finite number > 0"),
    ("lr", float("nan"), "lr must be a finite number > 0"),
    ("weight_decay", -0.05, "weight_decay must be a finite number >= 0"),
    ("layer_decay", 1.5, r"layer_decay must be null or a number in \(0, 1\]"),
    ("warmup_epochs", -1.0, "warmup_epochs must be a finite number >= 0"),
    ("warmup_steps", -10, "warmup_steps must be an integer >= 0"),
    ("min_lr", -1e-6, "min_lr must be a finite number >= 0"),
    ("min_lr", 1e-2, "min_lr 0.01 is above the peak lr 0.001"),
])
def test_optimiser_arguments_that_cannot_train_are_refused_naming_them(key, value, expected):
    from vitlab.core import SemanticSegmentation, ViT

    vit = ViT(embed_dim=32, depth=2, num_heads=2, img_size=32)
    with pytest.raises(ConfigError, match=rf"SemanticSegmentation: model\.init_args\.{expected}"):
        SemanticSegmentation(vit, num_classes=3, head="linear", **{"lr": 1e-3, key: value})


def test_a_warmup_longer_than_training_is_refused_when_the_schedule_is_built(tmp_path):
    with pytest.raises(ConfigError, match=r"warmup_epochs 3.0 is not shorter than trainer.max_epochs 2"):
        build_cli(cli_args("fit", tmp_path / "runs", "--trainer.max_epochs", "2",
                           "--model.init_args.warmup_epochs", "3"))


def test_a_negative_base_lr_is_refused_when_the_schedule_is_built(tmp_path):
    with pytest.raises(ConfigError, match=r"model\.init_args\.lr must be a finite number > 0"):
        build_cli(["fit", "--config", str(CONFIGS / "pretrain" / "quickstart.yaml"),
                   "--trainer.default_root_dir", str(tmp_path), "--trainer.accelerator", "cpu",
                   "--trainer.max_steps", "1", "--model.init_args.base_lr=-1.5e-4"])

