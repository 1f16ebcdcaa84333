"""The one loader helper: worker seeding per (run seed, worker, rank), pinning, persistence, and its use by
every DataModule."""

from __future__ import annotations

import random
from pathlib import Path

import numpy as np
import pytest
import torch
from torch.utils.data import Dataset

from vitlab.core.data.loader import make_loader, seed_worker, worker_seeds
from vitlab.core.data.sampling import EpochShuffleSampler

DATA = Path(__file__).resolve().parents[1] / "data"


class _Draws(Dataset):
    """Each item: the worker id and one draw from torch, numpy and Python RNGs."""

    def __len__(self) -> int:
        return 4

    def __getitem__(self, i: int):
        info = torch.utils.data.get_worker_info()
        return torch.tensor([float(info.id if info else -1), torch.rand(()).item(), float(np.random.rand()),
                             random.random()], dtype=torch.float64)


def _draws(loader) -> dict[int, tuple]:
    out = {}
    for b in loader:  # batch_size 1: one row per item
        wid = int(b[0, 0])
        out.setdefault(wid, tuple(b[0, 1:].tolist()))
    return out


def test_worker_seeds_are_distinct_per_worker_and_rank_and_reproducible():
    seeds = {(w, r): worker_seeds(7, w, r) for w in range(4) for r in range(3)}
    torch_seeds = [s[0] for s in seeds.values()]
    py_seeds = [s[2] for s in seeds.values()]
    assert len(set(torch_seeds)) == 12 and len(set(py_seeds)) == 12
    assert len({tuple(s[1]) for s in seeds.values()}) == 12
    assert worker_seeds(7, 1, 2)[0] == seeds[(1, 2)][0]  # same triple, same seeds
    assert worker_seeds(8, 1, 2)[0] != seeds[(1, 2)][0]  # run seed matters
    assert all(0 <= s < 2**63 for s in torch_seeds)


def test_workers_draw_different_numbers_and_runs_repeat(monkeypatch):
    monkeypatch.setenv("RANK", "0")
    first = _draws(make_loader(_Draws(), batch_size=1, train=False, num_workers=2, seed=3, pin_memory=False))
    again = _draws(make_loader(_Draws(), batch_size=1, train=False, num_workers=2, seed=3, pin_memory=False))
    assert set(first) == {0, 1}
    for k in range(3):  # torch, numpy, python: different per worker
        assert first[0][k] != first[1][k]
    assert first == again  # same run seed -> same streams
    monkeypatch.setenv("RANK", "1")
    other_rank = _draws(make_loader(_Draws(), batch_size=1, train=False, num_workers=2, seed=3, pin_memory=False))
    assert all(other_rank[w][k] != first[w][k] for w in (0, 1) for k in range(3))


def test_seed_worker_seeds_all_three_generators():
    seed_worker(5, 0)(1)
    a = (torch.rand(()).item(), np.random.rand(), random.random())
    seed_worker(5, 0)(1)
    b = (torch.rand(()).item(), np.random.rand(), random.random())
    assert a == b


def test_loader_defaults():
    ds = list(range(10))
    train = make_loader(ds, batch_size=3, train=True, num_workers=2)
    assert train.drop_last and train.pin_memory == torch.cuda.is_available()
    assert train.persistent_workers and isinstance(train.worker_init_fn, seed_worker)
    assert isinstance(train.sampler, torch.utils.data.RandomSampler)
    ev = make_loader(ds, batch_size=3, train=False)
    assert not ev.drop_last and not ev.persistent_workers and ev.worker_init_fn is None
    assert isinstance(ev.sampler, torch.utils.data.SequentialSampler)
    s = make_loader(ds, batch_size=3, train=True, sampler=EpochShuffleSampler(10, seed=1))
    assert isinstance(s.sampler, EpochShuffleSampler)
    with pytest.raises(ValueError, match="sampler or shuffle"):
        make_loader(ds, batch_size=3, train=True, sampler=EpochShuffleSampler(10), shuffle=True)
    with pytest.raises(ValueError, match="batch_size"):
        make_loader(ds, batch_size=0, train=True)


def _check(loader, workers: int) -> None:
    assert loader.pin_memory == torch.cuda.is_available()
    assert loader.persistent_workers == (workers > 0)
    assert isinstance(loader.worker_init_fn, seed_worker) == (workers > 0)


def test_sampler_follows_the_trainer_epoch_not_lightnings_set_epoch_count():
    """After a restore from an on_train_epoch_end checkpoint Lightning's set_epoch value runs one ahead."""
    perm = {}
    for epoch in (0, 1):
        ref = EpochShuffleSampler(10, seed=1)
        ref.set_epoch(epoch)
        perm[epoch] = list(ref)
    assert perm[0] != perm[1]
    trainer_epoch = [0]
    s = EpochShuffleSampler(10, seed=1)
    s.epoch_source = lambda: trainer_epoch[0]
    s.resume_at(epoch=0, start=10)  # checkpoint: epoch 0, every batch done
    s.set_epoch(1)  # Lightning's processed count
    assert list(s) == [], "the finished epoch must resume empty, not replay the next epoch"
    trainer_epoch[0] = 1
    s.set_epoch(2)
    assert list(s) == perm[1]
    mid = EpochShuffleSampler(10, seed=1)
    mid.resume_at(epoch=1, start=4)  # a mid-epoch checkpoint
    mid.set_epoch(1)
    assert list(mid) == perm[1][4:]


def test_seeded_samples_of_a_subset_keep_seeding_and_finish():
    """A ``Subset`` has ``__getitems__``, which the DataLoader calls when the dataset exposes it: the wrapper
    must not forward it, or the per-sample seeding and the uint8 finish are skipped for every subset."""
    from torch.utils.data import DataLoader, Subset

    from vitlab.core.data.sampling import SeededSamples

    class _Rand(Dataset):
        def __len__(self) -> int:
            return 4

        def __getitem__(self, i: int):
            return {"x": torch.rand(())}

    ss = SeededSamples(Subset(_Rand(), range(3)), seed=7, finish=lambda s: {**s, "finished": True})
    assert not hasattr(ss, "__getitems__")
    batch = next(iter(DataLoader(ss, batch_size=3)))
    assert batch["finished"].tolist() == [True, True, True]
    again = next(iter(DataLoader(ss, batch_size=3)))
    assert torch.equal(batch["x"], again["x"])  # seeded per sample, not by the global generator
