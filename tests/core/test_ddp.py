"""Two gloo processes on CPU: the EMA teacher stays identical on both ranks, metrics sync, normalisation
statistics and gradients average; one RankGuard per run; a dead rank is named."""

import os
import socket
import subprocess
import sys
from types import SimpleNamespace

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from lightning.pytorch import Callback, Trainer
from torch import nn
from torch.nn.parallel import DistributedDataParallel as DDP

from vitlab.core import SemanticSegmentation, ViT
from vitlab.core.data import SyntheticScenesDataModule
from vitlab.core.ddp import RankGuard, all_reduce_gradients, all_reduce_mean_, norm_running_stats
from vitlab.core.ema import EMATeacher
from vitlab.core.metrics import DepthMetrics

pytestmark = pytest.mark.ddp


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _worker(rank: int, world: int, port: int, out_dir: str) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=world)
    torch.manual_seed(0)  # same init on both ranks, as DDP requires
    student = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 1))
    ema = EMATeacher(student, decay=0.9)
    model = DDP(student)  # no find_unused_parameters: the frozen teacher is not part of it
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    gen = torch.Generator().manual_seed(100 + rank)  # different data on each rank
    for step in range(1, 4):
        x = torch.randn(16, 4, generator=gen)
        loss = model(x).pow(2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        for _micro in range(2):  # repeated hook calls within one optimizer step update once
            ema.maybe_update(student, global_step=step)
    flat = torch.cat([p.flatten() for p in ema.teacher.parameters()])
    gathered = [torch.zeros_like(flat) for _ in range(world)]
    dist.all_gather(gathered, flat)

    # normalisation statistics from rank-specific batches, averaged as RankGuard does after a batch
    bn = nn.BatchNorm1d(3, momentum=None)  # cumulative average: running_mean is the mean of the batch means
    local = torch.arange(12.0).view(4, 3) + 100 * rank
    bn(local)
    all_reduce_mean_(norm_running_stats(bn))
    # gradients of a local backward, averaged once (manual optimisation)
    w = nn.Parameter(torch.zeros(2))
    (w * (rank + 1)).sum().backward()
    unused = nn.Parameter(torch.zeros(1))
    all_reduce_gradients([w, unused])

    metric = DepthMetrics()
    metric.update(torch.full((1, 1, 2, 2), 2.0 if rank == 0 else 1.0), torch.ones(1, 1, 2, 2))
    synced = metric.compute()["abs_rel"]
    torch.save({"bn_mean": bn.running_mean.clone(), "bn_var": bn.running_var.clone(), "grad": w.grad.clone(),
                "unused_grad": unused.grad, "gathered": gathered, "updates": int(ema.num_updates), "abs_rel": synced,
                "student": torch.cat([p.detach().flatten() for p in student.parameters()])},
               os.path.join(out_dir, f"rank{rank}.pt"))
    dist.destroy_process_group()


def test_ema_teacher_and_metric_under_ddp(tmp_path):
    port = _free_port()
    mp.start_processes(_worker, args=(2, port, str(tmp_path)), nprocs=2, join=True, start_method="spawn")
    r0, r1 = (torch.load(tmp_path / f"rank{r}.pt") for r in (0, 1))
    torch.testing.assert_close(r0["gathered"][0], r0["gathered"][1], rtol=0, atol=0)
    torch.testing.assert_close(r0["student"], r1["student"], rtol=0, atol=0)
    assert r0["updates"] == r1["updates"] == 3
    # abs_rel is 1 on rank 0 and 0 on rank 1: the synced value averages the two images
    assert float(r0["abs_rel"]) == pytest.approx(0.5) and float(r1["abs_rel"]) == pytest.approx(0.5)
    # the teacher moved away from its start but lags the student
    assert not torch.equal(r0["gathered"][0], r0["student"])
    # running mean of the global batch (both ranks' rows), running var the mean of the per-rank variances
    both = torch.cat([torch.arange(12.0).view(4, 3) + 100 * r for r in (0, 1)])
    for r in (r0, r1):
        torch.testing.assert_close(r["bn_mean"], both.mean(0))
        torch.testing.assert_close(r["bn_var"], torch.arange(12.0).view(4, 3).var(0))
        torch.testing.assert_close(r["grad"], torch.full((2,), 1.5), rtol=0, atol=0)
        assert r["unused_grad"] is None, "a parameter without a gradient keeps none (the optimizer skips it)"
    torch.testing.assert_close(r0["bn_mean"], r1["bn_mean"], rtol=0, atol=0)
    torch.testing.assert_close(r0["bn_var"], r1["bn_var"], rtol=0, atol=0)


def _tiny_fit(tmp_path, callbacks=()):
    torch.manual_seed(0)
    model = SemanticSegmentation(ViT(size="tiny", embed_dim=32, depth=2, num_heads=2, img_size=32), num_classes=7,
                                 head="linear")
    dm = SyntheticScenesDataModule(modalities=["image", "semantic"], size=32, batch_size=2, train_samples=2,
                                   val_samples=2, num_workers=0)
    trainer = Trainer(accelerator="cpu", max_steps=1, enable_checkpointing=False,
                      enable_progress_bar=False, enable_model_summary=False, limit_val_batches=0,
                      callbacks=list(callbacks), default_root_dir=tmp_path)
    trainer.fit(model, dm)
    return trainer


def test_every_vitlab_module_runs_one_rank_guard(tmp_path):
    """Any Trainer (not only the CLI's) gets the guard from the module's setup, once and first; guards listed
    besides it are dropped."""
    trainer = _tiny_fit(tmp_path)
    guards = [c for c in trainer.callbacks if isinstance(c, RankGuard)]
    assert len(guards) == 1 and trainer.callbacks[0] is guards[0]
    listed = RankGuard(grace_s=1.0)
    trainer = _tiny_fit(tmp_path, [_ListedFirst(), listed, RankGuard()])
    assert [c for c in trainer.callbacks if isinstance(c, RankGuard)] == [listed]
    assert trainer.callbacks[0] is listed


class _ListedFirst(Callback):
    """A callback listed before the guard (the guard still goes first)."""


def test_only_the_first_rank_guard_acts():
    first, second = RankGuard(), RankGuard()
    trainer = SimpleNamespace(callbacks=[Callback(), first, second])
    assert first.acting(trainer) and not second.acting(trainer)


@pytest.mark.parametrize(("code", "expected"), [("os._exit(3)", "died with exit code 3"),
                                                ("os.kill(os.getpid(), 9)", "was killed by SIGKILL")])
def test_dead_rank_description(code, expected):
    """Rank 0 names the process it launched that died (rank, pid, exit code or signal, step)."""
    proc = subprocess.Popen([sys.executable, "-c", f"import os; {code}"])
    proc.wait(timeout=60)
    alive = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        launcher = SimpleNamespace(procs=[alive, proc], num_processes=3)
        trainer = SimpleNamespace(global_step=5, global_rank=0, node_rank=0, strategy=SimpleNamespace(launcher=launcher))
        message = RankGuard(grace_s=0.5).describe_failure(trainer, RuntimeError("Connection reset by peer"))
    finally:
        alive.kill()
        alive.wait()
    assert message is not None and f"rank 2 (pid {proc.pid}) {expected}" in message and "at step 5" in message, message
    assert "rank 1 " not in message, "a live peer is not reported dead"
