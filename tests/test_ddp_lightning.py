"""2-process DDP through Lightning and the CLI on CPU (gloo): ranks end with identical weights.

Runs ``vitlab fit`` as a user does (``--trainer.strategy ddp --trainer.devices 2``; Lightning starts the
second process itself) for a core task and for an EMA-teacher task (MaDis-Stereo), then compares the
two ranks' final state dicts (parameters, BatchNorm/EMA buffers) and checks that their random streams
differ (per-rank seeds: masks, drop-path and dropout must not repeat across ranks).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[1]
pytestmark = [pytest.mark.ddp, pytest.mark.slow]

TINY_VIT = ["--model.init_args.backbone.init_args.embed_dim", "32", "--model.init_args.backbone.init_args.depth", "2",
            "--model.init_args.backbone.init_args.num_heads", "2", "--model.init_args.backbone.init_args.img_size", "32"]


def _fit(config: str, root: Path, *extra: str) -> Path:
    env = dict(os.environ, PYTHONPATH=str(REPO / "tests"), WANDB_MODE="offline", OMP_NUM_THREADS="1")
    env.pop("VITLAB_RUN_DIR", None)
    cmd = [sys.executable, "-m", "vitlab.core", "fit", "--config", str(REPO / "configs" / config),
           "--trainer.accelerator", "cpu", "--trainer.devices", "2", "--trainer.strategy", "ddp",
           "--trainer.max_steps", "3", "--trainer.limit_val_batches", "1", "--trainer.num_sanity_val_steps", "0",
           "--trainer.default_root_dir", str(root), "--trainer.callbacks+=ddp_probe.DumpRankState",
           "--data.init_args.num_workers", "0", *extra]
    res = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=900, cwd=root.parent)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    runs = sorted(root.glob("version_*"))
    assert len(runs) == 1, f"both ranks must share one run folder, found {runs}"
    return runs[0]


def _compare(run: Path) -> None:
    r0, r1 = (torch.load(run / f"rank{r}.pt", weights_only=True) for r in (0, 1))
    assert r0["world"] == r1["world"] == 2
    assert r0["state_dict"].keys() == r1["state_dict"].keys()
    for k, v in r0["state_dict"].items():
        torch.testing.assert_close(r1["state_dict"][k], v, rtol=0, atol=0, msg=f"{k} differs between ranks")
    assert not torch.equal(r0["draws"], r1["draws"]), "both ranks draw the same random numbers"


def test_core_segmentation_ddp_ranks_agree(tmp_path):
    run = _fit("core/quickstart.yaml", tmp_path / "runs", *TINY_VIT, "--data.init_args.size", "32",
               "--data.init_args.batch_size", "2", "--data.init_args.train_samples", "12",
               "--data.init_args.val_samples", "4", "--model.init_args.backbone.init_args.drop_path_rate", "0.1")
    _compare(run)


def test_ema_teacher_task_ddp_ranks_agree(tmp_path):
    pytest.importorskip("vitlab.stereo")
    run = _fit("stereo/madis_quickstart.yaml", tmp_path / "runs", "--data.init_args.batch_size", "2",
               "--data.init_args.train_samples", "8", "--data.init_args.val_samples", "4")
    _compare(run)
    state = torch.load(run / "rank0.pt", weights_only=True)["state_dict"]
    assert any(k.startswith("teacher.") for k in state), "the EMA teacher is part of the checkpointed state"
