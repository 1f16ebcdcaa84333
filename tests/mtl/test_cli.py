"""Through the CLI: Δm is logged at validation end against a reference given in the config.
(Every shipped config is fitted as shipped by tests/test_shipped_configs.py, entries in tests/shipped/mtl.yaml.)"""

from __future__ import annotations

from pathlib import Path

import torch

from vitlab.core.cli import build_cli
from vitlab.mtl import MTLoRA

REPO = Path(__file__).resolve().parents[2]


def test_mtlora_quickstart_logs_delta_m(tmp_path):
    cli = build_cli([
        "fit", "--config", str(REPO / "configs" / "mtl" / "mtlora_quickstart.yaml"),
        "--trainer.max_steps", "2", "--trainer.limit_val_batches", "1", "--trainer.num_sanity_val_steps", "0",
        "--trainer.accelerator", "cpu", "--trainer.default_root_dir", str(tmp_path),
        "--data.init_args.batch_size", "2", "--data.init_args.train_samples", "4", "--data.init_args.val_samples", "2",
        "--model.init_args.tasks", "[semseg, normals]",
        "--model.init_args.reference", "{semseg: 20.0, normals: 40.0}",
    ])
    assert isinstance(cli.model, MTLoRA) and cli.trainer.global_step == 2
    m = cli.trainer.callback_metrics
    expect = 100 / 2 * ((m["val/semseg/mIoU"] - 20.0) / 20.0 - (m["val/normals/mean"] - 40.0) / 40.0)
    torch.testing.assert_close(m["val/delta_m"], expect, atol=1e-3, rtol=1e-4)
