"""Two gloo processes on CPU: the EMA teacher stays identical on both ranks and metrics sync."""

import os
import socket

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch import nn
from torch.nn.parallel import DistributedDataParallel as DDP

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

    metric = DepthMetrics()
    metric.update(torch.full((1, 1, 2, 2), 2.0 if rank == 0 else 1.0), torch.ones(1, 1, 2, 2))
    synced = metric.compute()["abs_rel"]
    torch.save({"gathered": gathered, "updates": int(ema.num_updates), "abs_rel": synced,
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
