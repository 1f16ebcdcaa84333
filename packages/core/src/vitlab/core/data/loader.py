"""One DataLoader factory for every vitlab DataModule.

:func:`make_loader` fixes what the DataModules used to set each on their own:

* pinned host memory whenever CUDA is available (asynchronous host-to-device copies);
* persistent workers whenever ``num_workers > 0`` (no worker start-up at each epoch);
* every worker of every DDP rank gets its own torch / numpy / Python RNG seeds, derived from the run seed
  (``seed_everything`` / ``PL_GLOBAL_SEED``), the worker id and the global rank (the scheme of
  Lightning's ``pl_worker_init_function``: a numpy ``SeedSequence`` over the three numbers), so random
  augmentation never repeats across workers or ranks and a run is reproducible from its seed;
* ``prefetch_factor`` only when there are workers;
* a private ``torch.Generator`` (seeded from the run seed) for the base seed torch draws each time an iterator
  starts, so starting an epoch never advances the global torch stream the training loop draws from.
"""

from __future__ import annotations

import os
import random
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Sampler

__all__ = ["make_loader", "worker_seeds", "seed_worker", "global_rank"]


def global_rank() -> int:
    """Rank of this process among all DDP processes (0 without distributed training)."""
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        return int(torch.distributed.get_rank())
    for key in ("RANK", "GLOBAL_RANK", "SLURM_PROCID"):
        if key in os.environ:
            return int(os.environ[key])
    return 0


def _run_seed(seed: int | None) -> int:
    if seed is not None:
        return int(seed)
    env = os.environ.get("PL_GLOBAL_SEED")
    return int(env) if env is not None else 0


def worker_seeds(base_seed: int, worker_id: int, rank: int) -> tuple[int, np.ndarray, int]:
    """``(torch seed, numpy seed words, python seed)`` for one worker of one rank.

    A numpy ``SeedSequence([base_seed, worker_id, rank])`` spawns well-mixed, independent streams: different
    workers and ranks never share a seed, the same triple always gives the same seeds.
    """
    ss = np.random.SeedSequence([int(base_seed) & 0xFFFFFFFF, int(worker_id), int(rank)])
    torch_ss, np_ss, py_ss = ss.spawn(3)
    torch_seed = int(torch_ss.generate_state(1, dtype=np.uint64)[0]) & ((1 << 63) - 1)
    np_seed = np_ss.generate_state(4)
    py_seed = int(py_ss.generate_state(2, dtype=np.uint64)[0])
    return torch_seed, np_seed, py_seed


class seed_worker:  # noqa: N801 - used like a function (worker_init_fn); a class so it pickles with its seed
    """``worker_init_fn`` seeding torch, numpy and ``random`` from (run seed, worker id, global rank)."""

    def __init__(self, base_seed: int, rank: int) -> None:
        self.base_seed = int(base_seed)
        self.rank = int(rank)

    def __call__(self, worker_id: int) -> None:
        t, n, p = worker_seeds(self.base_seed, worker_id, self.rank)
        torch.manual_seed(t)
        np.random.seed(n)
        random.seed(p)


def make_loader(
    dataset: Dataset,
    batch_size: int,
    train: bool,
    num_workers: int = 0,
    sampler: Sampler | None = None,
    shuffle: bool | None = None,
    drop_last: bool | None = None,
    collate_fn: Callable[[list[Any]], Any] | None = None,
    seed: int | None = None,
    pin_memory: bool | None = None,
    prefetch_factor: int | None = None,
) -> DataLoader:
    """The DataLoader every vitlab DataModule builds.

    Args:
        dataset: map-style dataset.
        batch_size: samples per batch.
        train: training loader: shuffled (unless a ``sampler`` is given) and ``drop_last`` (fixed shapes:
            no recompilation of a compiled model on a short last batch).
        num_workers: worker processes; > 0 makes them persistent.
        sampler: e.g. :class:`vitlab.core.data.sampling.EpochShuffleSampler` (resumable order); excludes
            ``shuffle``. Lightning replaces it by a ``DistributedSampler`` under DDP.
        shuffle, drop_last: override the ``train`` defaults.
        collate_fn: custom batching.
        seed: run seed for the worker seeds; default ``PL_GLOBAL_SEED`` (set by ``seed_everything``), else 0.
        pin_memory: default: whether CUDA is available.
        prefetch_factor: batches prefetched per worker (torch default 2); ignored without workers.
    """
    if batch_size < 1:
        raise ValueError(f"make_loader: batch_size must be >= 1, got {batch_size}")
    if num_workers < 0:
        raise ValueError(f"make_loader: num_workers must be >= 0, got {num_workers}")
    if shuffle is None:
        shuffle = train and sampler is None
    if sampler is not None and shuffle:
        raise ValueError("make_loader: give either a sampler or shuffle=True, not both")
    kwargs: dict[str, Any] = {}
    if num_workers > 0:
        kwargs["persistent_workers"] = True
        kwargs["worker_init_fn"] = seed_worker(_run_seed(seed), global_rank())
        if prefetch_factor is not None:
            kwargs["prefetch_factor"] = int(prefetch_factor)
    return DataLoader(
        dataset,
        batch_size=batch_size,
        shuffle=shuffle,
        sampler=sampler,
        drop_last=train if drop_last is None else drop_last,
        num_workers=num_workers,
        collate_fn=collate_fn,
        pin_memory=torch.cuda.is_available() if pin_memory is None else pin_memory,
        generator=torch.Generator().manual_seed(_run_seed(seed)),
        **kwargs,
    )
