"""Every tuner fits through the CLI (``build_cli(["fit", ...])``) on tiny SyntheticScenes, with each of core's
three task modules, and writes a tuner checkpoint."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from vitlab.core.cli import build_cli
from vitlab.peft import load_trainable, read_trainable

CONFIGS = Path(__file__).resolve().parents[2] / "configs" / "peft"

TINY = [
    "--trainer.accelerator", "cpu",
    "--trainer.logger", "false",
    "--trainer.enable_progress_bar", "false",
    "--trainer.enable_model_summary", "false",
    "--trainer.enable_checkpointing", "false",
    "--trainer.log_every_n_steps", "1",
    "--trainer.max_steps", "3",
    "--trainer.limit_val_batches", "2",
    "--model.init_args.backbone.init_args.embed_dim", "32",
    "--model.init_args.backbone.init_args.depth", "2",
    "--model.init_args.backbone.init_args.num_heads", "2",
    "--model.init_args.backbone.init_args.img_size", "32",
    "--model.init_args.backbone.init_args.patch_size", "8",
    "--data.init_args.size", "32",
    "--data.init_args.batch_size", "4",
    "--data.init_args.train_samples", "12",
    "--data.init_args.val_samples", "8",
]

TASKS = {"segmentation": "quickstart.yaml", "depth": "depth.yaml", "classification": "classification.yaml"}
# every tuner once per task would be 27 fits; each tuner runs on one task (all tasks covered several
# times) and iConFormer, the package's own method, on all three
RUNS = [("linear_probe", "classification"), ("full", "depth"), ("bitfit", "segmentation"),
        ("lora", "segmentation"), ("adapter", "depth"), ("adaptformer", "classification"),
        ("vpt_shallow", "depth"), ("vpt_deep", "segmentation"), ("iconformer", "classification"),
        ("iconformer", "depth"), ("iconformer", "segmentation")]
# a 1x1-conv head keeps dense runs fast; the configs' DPT head is exercised by core's own CLI tests
HEAD = {"segmentation": ["--model.init_args.head", "linear", "--model.init_args.head_kwargs", "{}"],
        "depth": ["--model.init_args.head", "linear", "--model.init_args.head_kwargs", "{}"],
        "classification": []}
EXPECTED = {"segmentation": "val/mIoU", "depth": "val/abs_rel", "classification": "val/acc1"}


def _args(task: str, tuner: str, tmp_path: Path) -> list[str]:
    return ["--config", str(CONFIGS / TASKS[task]), "--config", str(CONFIGS / "tuners" / f"{tuner}.yaml"), *TINY, *HEAD[task],
            "--trainer.default_root_dir", str(tmp_path),
            "--trainer.callbacks", "vitlab.peft.SaveTrainable", "--trainer.callbacks.dirpath", str(tmp_path)]


@pytest.mark.parametrize(("tuner", "task"), RUNS)
def test_tuner_fits_through_cli(tuner, task, tmp_path):
    cli = build_cli(["fit", *_args(task, tuner, tmp_path)])
    model = cli.model
    assert cli.trainer.global_step == 3
    assert type(model.tuner).__name__ == read_trainable(tmp_path / "tuner.pt")["tuner"]["class_path"].rsplit(".", 1)[1]
    metrics = cli.trainer.callback_metrics
    assert EXPECTED[task] in metrics and torch.isfinite(metrics[EXPECTED[task]])
    stats = model.tuner.trainable_parameters(model.backbone)
    if tuner == "linear_probe":
        assert stats["trainable"] == 0
    elif tuner == "full":
        assert stats["percent"] == 100.0
    else:
        assert 0 < stats["percent"] < 100
    # the written file restores the trained tuner + head onto a freshly built model of the same config
    fresh = build_cli(_args(task, tuner, tmp_path), run=False).model
    # same seed, same config: the frozen weights after Lightning's fit are bit-identical to untrained ones
    fresh_params = dict(fresh.named_parameters())
    for n, p in model.named_parameters():
        if not p.requires_grad:
            assert torch.equal(p, fresh_params[n]), f"frozen {n} changed during fit"
    load_trainable(fresh, tmp_path / "tuner.pt")
    x = torch.randn(2, 3, 32, 32)
    model.eval()
    fresh.eval()
    torch.testing.assert_close(fresh(x), model(x))


@pytest.mark.parametrize("config", ["ade20k_iconformer.yaml", "nyu_depth_iconformer.yaml", "imagenet_iconformer.yaml"])
def test_full_scale_configs_parse(config, capsys):
    """The GPU recipes resolve (classes, argument names and types) without building ViT-B or reading data."""
    extra = ["--data.init_args.root", "/data/imagenet"] if config.startswith("imagenet") else []
    with pytest.raises(SystemExit) as exit_info:
        build_cli(["fit", "--config", str(CONFIGS / config), *extra, "--print_config"])
    assert exit_info.value.code in (0, None)
    printed = capsys.readouterr().out
    assert "vitlab.peft.iConFormer" in printed and "size: base" in printed


ALL_TUNERS = ["linear_probe", "full", "bitfit", "lora", "adapter", "adaptformer", "vpt_shallow", "vpt_deep", "iconformer"]


@pytest.mark.filterwarnings("ignore:You are trying to `self.log\\(\\)`")
@pytest.mark.parametrize("task", list(TASKS))
def test_every_tuner_config_builds_for_every_task(task, tmp_path):
    """All 27 task x tuner config pairs resolve, build and run a training step (the fits above cover 11)."""
    for tuner in ALL_TUNERS:
        cli = build_cli(_args(task, tuner, tmp_path), run=False)
        model, dm = cli.model, cli.datamodule
        dm.setup("fit")
        batch = dm.on_after_batch_transfer(next(iter(dm.train_dataloader())), 0)
        loss = model.training_step(batch, 0)
        loss.backward()
        grads = [p.grad is not None for p in model.parameters() if p.requires_grad]
        assert torch.isfinite(loss) and grads and all(grads), f"{task} + {tuner}"
