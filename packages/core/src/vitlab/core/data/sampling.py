"""Samplers whose order depends only on (seed, epoch), per-sample random streams, and mid-epoch resume.

Two things make a resumed run equal the uninterrupted one, whatever the number of workers:

* the order: :class:`EpochShuffleSampler` draws the permutation of an epoch from ``(seed, epoch)`` only, and
  :class:`ResumableDataMixin` skips the batches a checkpoint had already consumed;
* the augmentation: every training sample is loaded inside :func:`sample_seeding`, which seeds Python's
  ``random``, numpy's global generator and torch's CPU generator from ``(seed, epoch, index)`` and puts the
  previous states back afterwards. A sample's random crop, flip or jitter is then a pure function of those three
  numbers, the same in a worker or in the main process, before or after a restart, and loading (or prefetching)
  never moves the training loop's own random streams.
"""

from __future__ import annotations

import random
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, Sampler, get_worker_info

_SAMPLE_SEED: int | None = None


def sample_seed() -> int | None:
    """The seed of the sample being loaded inside :func:`sample_seeding` (None outside).

    Augmentors with a private generator derive it from this, so they follow the per-sample law too.
    """
    return _SAMPLE_SEED


@contextmanager
def sample_seeding(seed: int, epoch: int, index: int) -> Iterator[int]:
    """Seed ``random``, ``numpy.random`` and torch's CPU generator from ``(seed, epoch, index)``; restore them after.

    Yields the derived 63-bit seed (also returned by :func:`sample_seed` meanwhile).
    """
    global _SAMPLE_SEED
    words = np.random.SeedSequence([int(seed) & 0xFFFFFFFF, int(epoch) & 0xFFFFFFFF, int(index)]).generate_state(2)
    derived = (int(words[0]) << 31 ^ int(words[1])) & ((1 << 63) - 1)
    # a loader worker's global streams serve its samples only, each seeded afresh: nothing to put back there
    # (saving and restoring numpy's state alone costs ~0.1 ms a sample)
    restore = get_worker_info() is None
    if restore:
        py, npy, th = random.getstate(), np.random.get_state(), torch.get_rng_state()
    previous = _SAMPLE_SEED
    random.seed(derived)
    np.random.seed(words)
    # the CPU generator only: ``torch.manual_seed`` also re-seeds every CUDA/XPU generator (which this would not
    # put back, moving a GPU run's own streams) and records a stack trace per device (~0.5 ms a sample)
    torch.default_generator.manual_seed(derived)
    _SAMPLE_SEED = derived
    try:
        yield derived
    finally:
        if restore:
            random.setstate(py)
            np.random.set_state(npy)
            torch.set_rng_state(th)
        _SAMPLE_SEED = previous


class EpochShuffleSampler(Sampler[int]):
    """A random permutation per epoch drawn from ``seed + epoch``.

    torch's ``RandomSampler`` draws from the global RNG, whose state after a restart differs from the
    uninterrupted run; Lightning calls :meth:`set_epoch` at the start of each epoch (as for
    ``DistributedSampler``, which replaces this sampler under DDP), so the order is reproducible.
    :meth:`resume_at` makes the next pass over a given epoch start after the samples a checkpointed run
    had already consumed, so a run resumed from a mid-epoch checkpoint sees exactly the remaining batches.

    ``with_epoch=True`` yields ``(epoch, index)`` pairs instead of indices, so that the dataset (wrapped by
    :class:`SeededSamples`) can seed each sample's augmentation from them, also inside persistent workers.
    """

    def __init__(self, num_samples: int, seed: int = 0, with_epoch: bool = False) -> None:
        self.num_samples = int(num_samples)
        self.seed = int(seed)
        self.with_epoch = bool(with_epoch)
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
        if self.with_epoch:
            return iter([(current, i) for i in order])
        return iter(order)

    def __len__(self) -> int:
        return self.num_samples


class SeededSamples(torch.utils.data.Dataset):
    """Wraps a dataset so that every item is loaded inside :func:`sample_seeding` (see the module docstring).

    Keys are ``(epoch, index)`` pairs from :class:`EpochShuffleSampler` (``with_epoch=True``) or plain indices
    (evaluation: epoch 0). ``finish`` (optional) is applied to each loaded sample, e.g. the uint8 conversion of
    images.
    """

    def __init__(self, dataset: Any, seed: int = 0, finish: Callable[[Any], Any] | None = None) -> None:
        self.dataset = dataset
        self.seed = int(seed)
        self.finish = finish

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, key: Any) -> Any:
        epoch, index = key if isinstance(key, tuple) else (0, key)
        with sample_seeding(self.seed, epoch, index):
            sample = self.dataset[index]
        return self.finish(sample) if self.finish is not None else sample

    def __getattr__(self, name: str) -> Any:  # dataset attributes (num_classes, pairs ...) stay reachable
        # never a dunder: the DataLoader fetches through ``dataset.__getitems__`` when it exists (``Subset`` has
        # one), which would bypass the seeding and ``finish`` of :meth:`__getitem__`
        if name == "dataset" or (name.startswith("__") and name.endswith("__")):
            raise AttributeError(name)
        return getattr(self.dataset, name)


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
