"""Samplers whose order depends only on (seed, epoch), so an interrupted run resumes bit-identically."""

from __future__ import annotations

from collections.abc import Iterator

import torch
from torch.utils.data import Sampler


class EpochShuffleSampler(Sampler[int]):
    """A random permutation per epoch drawn from ``seed + epoch``.

    torch's ``RandomSampler`` draws from the global RNG, whose state after a restart differs from the
    uninterrupted run; Lightning calls :meth:`set_epoch` at the start of each epoch (as for
    ``DistributedSampler``, which replaces this sampler under DDP), so the order is reproducible.
    """

    def __init__(self, num_samples: int, seed: int = 0) -> None:
        self.num_samples = int(num_samples)
        self.seed = int(seed)
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def __iter__(self) -> Iterator[int]:
        gen = torch.Generator().manual_seed(self.seed * 1_000_003 + self.epoch)
        return iter(torch.randperm(self.num_samples, generator=gen).tolist())

    def __len__(self) -> int:
        return self.num_samples
