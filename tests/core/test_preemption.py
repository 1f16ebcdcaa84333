"""SIGTERM (a scheduler's preemption) during ``vitlab fit``: last.ckpt of that step, exit 143, SLURM requeue.

The fits run as real ``python -m vitlab.core`` processes that receive the signal mid-run; the resumes run
in-process from the checkpoint they wrote. The config's own logger (W&B) and callbacks stay; the test
environment runs W&B disabled.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import torch

from vitlab.core.cli import build_cli
from vitlab.core.preemption import PREEMPTED_EXIT_CODE, slurm_job_id

REPO = Path(__file__).resolve().parents[2]
CONFIG = REPO / "configs" / "core" / "quickstart.yaml"

TINY = [
    "--trainer.accelerator", "cpu", "--trainer.enable_model_summary", "false", "--trainer.num_sanity_val_steps", "0",
    "--trainer.log_every_n_steps", "1", "--trainer.max_steps", "100000",
    "--model.init_args.backbone.init_args.embed_dim", "48", "--model.init_args.backbone.init_args.depth", "2",
    "--model.init_args.backbone.init_args.num_heads", "3", "--model.init_args.backbone.init_args.img_size", "32",
    "--model.init_args.head_kwargs", "{feature_dim: 16, layer_dims: [8, 16, 32, 48], last_dim: 8}",
    "--data.init_args.size", "32", "--data.init_args.batch_size", "2", "--data.init_args.num_workers", "0",
    "--data.init_args.train_samples", "8", "--data.init_args.val_samples", "2",
]


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SLURM_")}
    env.update(OMP_NUM_THREADS="1", PYTHONUNBUFFERED="1", **extra)
    return env


def _fit_until_sigterm(root: Path, env: dict[str, str], after_step: int = 3) -> tuple[int, str]:
    """Start a fit, send SIGTERM once it printed step ``after_step``; returns (exit status, its output)."""
    cmd = [sys.executable, "-m", "vitlab.core", "fit", "--config", str(CONFIG), *TINY,
           "--trainer.default_root_dir", str(root)]
    log = root.parent / f"{root.name}.log"
    with open(log, "w") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env=env, cwd=root.parent)
        deadline = time.monotonic() + 240
        while f"step {after_step}/" not in log.read_text():
            assert proc.poll() is None, f"the fit ended before step {after_step}:\n{log.read_text()[-3000:]}"
            assert time.monotonic() < deadline, f"no step {after_step} within 240 s:\n{log.read_text()[-3000:]}"
            time.sleep(0.1)
        proc.send_signal(signal.SIGTERM)
        try:
            code = proc.wait(timeout=120)
        except subprocess.TimeoutExpired:
            proc.kill()
            raise
    return code, log.read_text()


def _step(path: Path) -> int:
    return int(torch.load(path, map_location="cpu", mmap=True, weights_only=True)["global_step"])


def test_sigterm_writes_last_ckpt_exits_nonzero_and_resumes(tmp_path):
    root = tmp_path / "runs"
    code, out = _fit_until_sigterm(root, _env())
    assert code == PREEMPTED_EXIT_CODE, f"exit status {code}:\n{out[-3000:]}"
    last = root / "version_0" / "checkpoints" / "last.ckpt"
    assert last.is_file(), out[-3000:]
    step = _step(last)
    assert step >= 3 and f"fit stopped by SIGTERM at global step {step}: last.ckpt holds it" in out, out[-3000:]
    assert "--ckpt_path " + str(root / "version_0") in out
    resumed = build_cli(["fit", "--config", str(CONFIG), *TINY, "--trainer.default_root_dir", str(root),
                         "--trainer.max_steps", str(step + 2), "--ckpt_path", str(root / "version_0")]).trainer
    assert resumed.global_step == step + 2
    assert Path(resumed.default_root_dir) == root / "version_0"  # continued in its own folder
    assert _step(last) == step + 2


def test_sigterm_under_slurm_requeues_and_the_requeued_job_resumes(tmp_path, monkeypatch):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    calls = tmp_path / "scontrol.calls"
    fake = bin_dir / "scontrol"
    fake.write_text(f'#!/bin/sh\necho "$@" >> "{calls}"\n')
    fake.chmod(0o755)
    env = _env(SLURM_JOB_ID="4242", PATH=f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}")
    root = tmp_path / "runs"
    code, out = _fit_until_sigterm(root, env)
    assert code == PREEMPTED_EXIT_CODE, f"exit status {code}:\n{out[-3000:]}"
    assert calls.read_text().split("\n")[0] == "requeue 4242", out[-3000:]
    assert "SLURM job 4242 requeued" in out
    last = root / "job-4242" / "checkpoints" / "last.ckpt"
    step = _step(last)
    # the requeued job runs the same command (no --ckpt_path) and continues from its folder's last.ckpt
    for key in [k for k in os.environ if k.startswith("SLURM_")]:
        monkeypatch.delenv(key)
    monkeypatch.setenv("SLURM_JOB_ID", "4242")
    resumed = build_cli(["fit", "--config", str(CONFIG), *TINY, "--trainer.default_root_dir", str(root),
                         "--trainer.max_steps", str(step + 1)]).trainer
    assert resumed.global_step == step + 1
    assert _step(last) == step + 1


def test_slurm_job_id_of_array_tasks():
    assert slurm_job_id({"SLURM_JOB_ID": "77"}) == "77"
    assert slurm_job_id({"SLURM_JOB_ID": "78", "SLURM_ARRAY_JOB_ID": "70", "SLURM_ARRAY_TASK_ID": "3"}) == "70_3"
    assert slurm_job_id({"SLURM_JOB_ID": "7; rm -rf /"}) is None
    assert slurm_job_id({}) is None


def test_requeue_follows_lightning_auto_requeue_setting(tmp_path, monkeypatch):
    from types import SimpleNamespace

    from lightning.fabric.plugins.environments import LightningEnvironment, SLURMEnvironment

    from vitlab.core.preemption import PreemptionCheckpoint

    calls = tmp_path / "scontrol.calls"
    fake = tmp_path / "scontrol"
    fake.write_text(f'#!/bin/sh\necho "$@" >> "{calls}"\n')
    fake.chmod(0o755)
    monkeypatch.setenv("PATH", f"{tmp_path}{os.pathsep}{os.environ.get('PATH', '')}")
    monkeypatch.setenv("SLURM_JOB_ID", "99")
    for env, expected in [(SLURMEnvironment(auto_requeue=False), None), (LightningEnvironment(), "99")]:
        trainer = SimpleNamespace(_accelerator_connector=SimpleNamespace(cluster_environment=env))
        cb = PreemptionCheckpoint()
        cb._requeue(trainer)
        assert cb.requeued == expected, env
    assert calls.read_text() == "requeue 99\n"
