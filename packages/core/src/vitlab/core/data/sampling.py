"""Samplers whose order depends only on (seed, epoch), and DataModules that resume mid-epoch exactly."""

from __future__ import annotations

import warnings
from collections.abc import Callable, Iterator
from typing import Any

import torch
from torch.utils.data import DataLoader, Sampler


class EpochShuffleSampler(Sampler[int]):
    """A random permutation per epoch drawn from ``seed + epoch``.

    torch's ``RandomSampler`` draws from the global RNG, whose state after a restart differs from the
    uninterrupted run; Lightning calls :meth:`set_epoch` at the start of each epoch (as for
    ``DistributedSampler``, which replaces this sampler under DDP), so the order is reproducible.
    :meth:`resume_at` makes the next pass over a given epoch start after the samples a checkpointed run
    had already consumed, so a run resumed from a mid-epoch checkpoint sees exactly the remaining batches.
    """

    def __init__(self, num_samples: int, seed: int = 0) -> None:
        self.num_samples = int(num_samples)
        self.seed = int(seed)
        self.epoch = 0
        self.epoch_source: Callable[[], int] | None = None
        self._resume: tuple[int, int] | None = None

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def current_epoch(self) -> int:
        """``epoch_source()`` when set (the trainer's epoch, read when the pass starts), else the ``set_epoch`` value.

        After a restore from a checkpoint written by ``on_train_epoch_end``, Lightning's ``set_epoch`` value (its
        processed-epoch count) runs one ahead of ``trainer.current_epoch`` for the rest of the run; the finished
        epoch then replayed a batch of the next epoch's order and every later epoch drew the wrong permutation.
        """
        return int(self.epoch_source()) if self.epoch_source is not None else self.epoch

    def resume_at(self, epoch: int, start: int) -> None:
        """Skip the first ``start`` indices of ``epoch``'s permutation, once."""
        self._resume = (int(epoch), int(start))

    def __iter__(self) -> Iterator[int]:
        current = self.current_epoch()
        gen = torch.Generator().manual_seed(self.seed * 1_000_003 + current)
        order = torch.randperm(self.num_samples, generator=gen).tolist()
        if self._resume is not None:
            epoch, start = self._resume
            self._resume = None
            if epoch == current:
                order = order[start:]
        return iter(order)

    def __len__(self) -> int:
        return self.num_samples


def _samplers(loader: Any) -> list[EpochShuffleSampler]:
    found = []
    for dl in _loaders(loader):
        for sampler in (dl.sampler, getattr(dl.batch_sampler, "sampler", None)):
            if isinstance(sampler, EpochShuffleSampler) and sampler not in found:
                found.append(sampler)
    return found


def _loaders(obj: Any) -> list[DataLoader]:
    if isinstance(obj, DataLoader):
        return [obj]
    iterables = getattr(obj, "iterables", obj)  # a CombinedLoader
    if isinstance(iterables, dict):
        return [dl for v in iterables.values() for dl in _loaders(v)]
    if isinstance(iterables, (list, tuple)):
        return [dl for v in iterables for dl in _loaders(v)]
    return []


class ResumableDataMixin:
    """Mix into a ``LightningDataModule`` whose train loaders use :class:`EpochShuffleSampler`.

    The DataModule's checkpoint state records how many training batches of the current epoch were done;
    on restore, :meth:`resumable` (wrap the train loader(s) in ``train_dataloader``) tells the samplers to
    skip them, so a run killed mid-epoch and resumed equals the uninterrupted run (single process; under
    DDP Lightning's distributed sampler replaces ours and the epoch restarts, with a warning).
    """

    _resume_state: dict[str, int] | None = None

    def state_dict(self) -> dict[str, Any]:
        trainer = getattr(self, "trainer", None)
        if trainer is None:
            return {}
        progress = trainer.fit_loop.epoch_loop.batch_progress.current
        return {"epoch": int(trainer.current_epoch), "batches": int(progress.processed)}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self._resume_state = dict(state_dict) if state_dict else None

    def resumable(self, loader: Any) -> Any:
        state, self._resume_state = self._resume_state, None
        trainer = getattr(self, "trainer", None)
        if trainer is not None:
            for sampler in _samplers(loader):
                sampler.epoch_source = lambda: trainer.current_epoch
        if not state or not state.get("batches"):
            return loader
        if trainer is not None and trainer.world_size > 1:
            warnings.warn("mid-epoch resume under DDP restarts the epoch's order (distributed sampler)",
                          stacklevel=2)
            return loader
        for dl in _loaders(loader):
            if isinstance(dl.sampler, EpochShuffleSampler) and dl.batch_size:
                dl.sampler.resume_at(state["epoch"], state["batches"] * dl.batch_size)
            elif dl.batch_sampler is not None and isinstance(getattr(dl.batch_sampler, "sampler", None),
                                                              EpochShuffleSampler):
                dl.batch_sampler.sampler.resume_at(state["epoch"], state["batches"] * dl.batch_sampler.batch_size)
        return loader
