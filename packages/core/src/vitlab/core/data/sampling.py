"""Samplers whose order depends only on (seed, epoch), and DataModules that resume mid-epoch exactly."""

from __future__ import annotations

import warnings
from collections.abc import Iterator
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
        self.epoch_offset = 0
        self._resume: tuple[int, int] | None = None

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch) - self.epoch_offset

    def resume_at(self, epoch: int, start: int, epoch_offset: int = 0) -> None:
        """Skip the first ``start`` indices of ``epoch``'s permutation, once; ``epoch_offset`` is subtracted
        from every later :meth:`set_epoch` value (Lightning's count runs ahead after some restores)."""
        self._resume = (int(epoch), int(start))
        self.epoch_offset = int(epoch_offset)

    def __iter__(self) -> Iterator[int]:
        gen = torch.Generator().manual_seed(self.seed * 1_000_003 + self.epoch)
        order = torch.randperm(self.num_samples, generator=gen).tolist()
        if self._resume is not None:
            epoch, start = self._resume
            self._resume = None
            if epoch == self.epoch:
                order = order[start:]
        return iter(order)

    def __len__(self) -> int:
        return self.num_samples


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
        # ``set_epoch``: the value Lightning passes to ``set_epoch`` on restore (its processed-epoch count).
        # In a checkpoint written by ``on_train_epoch_end`` it is ``current_epoch + 1`` (the epoch is processed,
        # not yet completed), and it stays one ahead for the rest of the resumed run; the samplers subtract
        # the difference, so the order follows the true epoch and the finished epoch resumes empty
        return {"epoch": int(trainer.current_epoch), "batches": int(progress.processed),
                "set_epoch": int(trainer.fit_loop.epoch_progress.current.processed)}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self._resume_state = dict(state_dict) if state_dict else None

    def resumable(self, loader: Any) -> Any:
        state, self._resume_state = self._resume_state, None
        if not state or not state.get("batches"):
            return loader
        trainer = getattr(self, "trainer", None)
        if trainer is not None and trainer.world_size > 1:
            warnings.warn("mid-epoch resume under DDP restarts the epoch's order (distributed sampler)",
                          stacklevel=2)
            return loader
        offset = state.get("set_epoch", state["epoch"]) - state["epoch"]
        for dl in _loaders(loader):
            if isinstance(dl.sampler, EpochShuffleSampler) and dl.batch_size:
                dl.sampler.resume_at(state["epoch"], state["batches"] * dl.batch_size, offset)
            elif dl.batch_sampler is not None and isinstance(getattr(dl.batch_sampler, "sampler", None),
                                                              EpochShuffleSampler):
                dl.batch_sampler.sampler.resume_at(state["epoch"], state["batches"] * dl.batch_sampler.batch_size,
                                                   offset)
        return loader
