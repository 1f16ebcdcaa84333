"""Shared test settings: no network, no W&B uploads, small thread pools."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"


@pytest.fixture(autouse=True)
def _offline_env(monkeypatch, tmp_path):
    """Every test runs without W&B network access and writes its logs to its own tmp dir."""
    monkeypatch.setenv("WANDB_MODE", os.environ.get("VITLAB_TEST_WANDB_MODE", "disabled"))
    monkeypatch.setenv("WANDB_DIR", str(tmp_path))
    monkeypatch.setenv("WANDB_SILENT", "true")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.delenv("VITLAB_RUN_DIR", raising=False)
    yield
    wandb = sys.modules.get("wandb")
    if wandb is not None and getattr(wandb, "run", None) is not None:
        wandb.finish()  # a fit driven by hand (not through the CLI) leaves its run open
    if wandb is not None and hasattr(wandb, "teardown"):
        # wandb (0.31) keeps the settings of the first run of a process (a "disabled" run makes every later
        # run in that process a no-op): the next test reads WANDB_MODE afresh, as a new process would.
        wandb.teardown()
    # pytest keeps the last runs' temp folders: checkpoints of ViT-B-width models there would fill the disk
    for ckpt in tmp_path.rglob("*.ckpt"):
        ckpt.unlink(missing_ok=True)


@pytest.fixture(scope="session", autouse=True)
def _threads():
    """Share the cores between pytest-xdist workers: oversubscribed OpenMP threads spin against each other."""
    workers = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
    torch.set_num_threads(max(1, min(2, (os.cpu_count() or 1) // workers)))


@pytest.fixture
def shared_data() -> Path:
    """The real dataset samples beside the repository; tests using them skip when absent."""
    if not SHARED_DATA.is_dir():
        pytest.skip("../shared/data is not present: real-sample tests need it")
    return SHARED_DATA


@pytest.fixture
def repo_root() -> Path:
    return REPO
