"""Every shipped config fits through the CLI as shipped (plus the shipped-config overrides of
tests/shipped/mtl.yaml): quickstarts on synthetic scenes, PASCAL-Context recipes on the real-format fixture."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import yaml

from vitlab.core.cli import build_cli

REPO = Path(__file__).resolve().parents[2]
CONFIGS = REPO / "configs" / "mtl"
SHIPPED = yaml.safe_load((REPO / "tests" / "shipped" / "mtl.yaml").read_text())


def test_every_config_has_a_shipped_entry():
    assert sorted(p.name for p in CONFIGS.glob("*.yaml")) == sorted(SHIPPED)


def _param(name: str):
    # the PASCAL recipes build full Swin-T / HRNet models: minutes on a loaded 2-core CPU
    return pytest.param(name, marks=pytest.mark.slow) if name.startswith("pascal") else name


@pytest.mark.parametrize("name", [_param(n) for n in sorted(SHIPPED)])
def test_shipped_config_fits(name, tmp_path, monkeypatch):
    monkeypatch.chdir(REPO)
    text = (CONFIGS / name).read_text()
    args = ["fit", "--config", str(CONFIGS / name), "--trainer.max_steps", "2", "--trainer.limit_val_batches", "1",
            "--trainer.default_root_dir", str(tmp_path), "--trainer.accelerator", "cpu", "--trainer.devices", "1",
            "--data.init_args.num_workers", "0"]
    if "SyntheticMultiTaskDataModule" in text:
        args += ["--data.init_args.train_samples", "8", "--data.init_args.val_samples", "4"]
    cli = build_cli(args + list(SHIPPED[name]))
    assert cli.trainer.global_step == 2
    m = cli.trainer.callback_metrics
    assert torch.isfinite(m["train/loss"])
    for t in cli.model.tasks:
        assert any(k.startswith(f"val/{t}/") for k in m), (t, sorted(m))
    if cli.model.reference is not None and len(cli.model.tasks) > 1:
        assert torch.isfinite(m["val/delta_m"])
