"""The one base class of every vitlab DataModule.

A DataModule says only what is its own: which dataset each split is (:meth:`VitlabDataModule.make_dataset`),
how its samples are batched (:meth:`~VitlabDataModule.collate_fn`), and what runs batched on the device on
training batches (:meth:`~VitlabDataModule.device_augment`). Everything a run relies on lives here, once:

* split -> dataset, built once per split in ``setup`` (``fit``: train + val, ``validate``: val, ``test``,
  ``predict``); a training split smaller than one batch is an error naming the split;
* every loader through :func:`~vitlab.core.data.make_loader` (pinned memory on CUDA, persistent workers, worker
  seeds from the run seed and the rank); the training order from
  :class:`~vitlab.core.data.EpochShuffleSampler` and each sample's augmentation seeded from
  ``(seed, epoch, index)`` (:func:`~vitlab.core.data.sampling.sample_seeding`), so a run resumed from a
  mid-epoch checkpoint sees exactly the batches and draws of the uninterrupted run, with or without workers;
* images leave the workers as uint8 (a quarter of the bytes of float32 through worker queues, pinned memory and
  the host-to-device copy); a float image in [0, 1] is quantised to 8 bits at the end of the worker pipeline;
* one ``on_after_batch_transfer``: uint8 -> float in [0, 1] on the device, the DataModule's
  :meth:`~VitlabDataModule.device_augment` on training batches, then ImageNet normalisation
  (:func:`~vitlab.core.data.imagenet_normalize`) of the :attr:`~VitlabDataModule.image_keys`;
* a few samples of each split are read in ``setup`` through the data check's sample inspection
  (:func:`~vitlab.core.data.check.sampled_check`, :attr:`~VitlabDataModule.setup_check_samples`), so a wrong root
  or a broken file fails in seconds with one line naming it, not at the first batch of a long run;
* batches that are dicts of sub-batches (``{"source": ..., "target": ...}`` in domain adaptation) get all of
  the above per sub-batch; a training split given as a dict of datasets becomes a ``CombinedLoader``
  (``max_size_cycle``) yielding such dicts.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import torch
from lightning.pytorch import LightningDataModule
from lightning.pytorch.utilities import CombinedLoader
from torch import Tensor
from torch.utils.data import DataLoader, Dataset

from vitlab.core.data.constants import imagenet_normalize
from vitlab.core.data.loader import make_loader
from vitlab.core.data.sampling import EpochShuffleSampler, ResumableDataMixin, SeededSamples
from vitlab.core.errors import ConfigError

__all__ = ["SPLITS", "VitlabDataModule", "to_float_images", "to_uint8_images"]

#: dataset splits and the Lightning stages that need them
SPLITS = ("train", "val", "test", "predict")
_SPLIT_STAGE = {"train": "fit", "val": "validate", "test": "test", "predict": "predict"}
_STAGE_SPLITS = {None: SPLITS, "fit": ("train", "val"), "validate": ("val",), "test": ("test",),
                 "predict": ("predict",)}


def _is_image(x: Any) -> bool:
    return isinstance(x, Tensor) and x.dim() >= 3 and x.shape[-3] == 3


def to_uint8_images(sample: Any, keys: tuple[str, ...]) -> Any:
    """Float images in [0, 1] under ``keys`` -> uint8 (rounded); nested dicts are followed. Other values pass."""
    if not isinstance(sample, dict):
        return sample
    out = {}
    for k, v in sample.items():
        if isinstance(v, dict):
            out[k] = to_uint8_images(v, keys)
        elif k in keys and _is_image(v) and v.is_floating_point():
            out[k] = v.mul(255.0).round_().clamp_(0.0, 255.0).to(torch.uint8)
        else:
            out[k] = v
    return out


def to_float_images(batch: Any, keys: tuple[str, ...]) -> Any:
    """uint8 images under ``keys`` -> float32 in [0, 1], on their own device; nested dicts are followed."""
    if not isinstance(batch, dict):
        return batch
    out = {}
    for k, v in batch.items():
        if isinstance(v, dict):
            out[k] = to_float_images(v, keys)
        elif k in keys and isinstance(v, Tensor) and v.dtype == torch.uint8:
            out[k] = v.float().div_(255.0)
        else:
            out[k] = v
    return out


def _per_sub_batch(batch: Any, fn: Callable[[dict], dict]) -> Any:
    """Apply ``fn`` to a dict batch, or to each sub-batch of a dict of dict batches."""
    if isinstance(batch, dict) and batch and all(isinstance(v, dict) for v in batch.values()):
        return {k: fn(v) for k, v in batch.items()}
    return fn(batch) if isinstance(batch, dict) else batch


def _check_int(owner: str, name: str, value: Any, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ConfigError(f"{owner}: `{name}` must be an integer >= {minimum}, got {value!r}")
    return int(value)


class _UInt8Finish:
    """Picklable per-sample finisher: float [0, 1] images -> uint8."""

    def __init__(self, keys: tuple[str, ...]) -> None:
        self.keys = keys

    def __call__(self, sample: Any) -> Any:
        return to_uint8_images(sample, self.keys)


class VitlabDataModule(ResumableDataMixin, LightningDataModule):
    """Base of every vitlab DataModule (see the module docstring for what it guarantees).

    Args:
        batch_size: training batch size (the train loader drops an incomplete last batch).
        num_workers: loader worker processes (persistent when > 0).
        seed: the data seed: training order and every sample's augmentation draws.
        val_batch_size: batch size of val/test/predict loaders; default ``batch_size``.
        normalize: ImageNet-normalise :attr:`image_keys` on the device (``False``: float images in [0, 1]).
        uint8_transfer: quantise float images to uint8 at the end of the worker pipeline (off for a dataset whose
            images are not in [0, 1]).
        pin_memory: default: whether CUDA is available.

    Subclasses implement :meth:`make_dataset` and may override :meth:`collate_fn`, :meth:`device_augment`,
    :attr:`image_keys` and :meth:`check_setup`.
    """

    #: a base class: not a DataModule of its own (set only in the class body of bases)
    abstract = True

    #: samples per split (evenly spaced) read in ``setup`` to fail fast on a broken copy; 0 for data rendered in
    #: memory, which has no files to check
    setup_check_samples: int = 2

    #: keys holding (…, 3, H, W) images: sent as uint8, normalised on the device
    image_keys: tuple[str, ...] = ("image",)

    def __init__(self, batch_size: int = 16, num_workers: int = 0, seed: int = 0, val_batch_size: int | None = None,
                 normalize: bool = True, uint8_transfer: bool = True, pin_memory: bool | None = None) -> None:
        super().__init__()
        owner = type(self).__name__
        self.batch_size = _check_int(owner, "batch_size", batch_size, 1)
        self.num_workers = _check_int(owner, "num_workers", num_workers, 0)
        self.val_batch_size = self.batch_size if val_batch_size is None else \
            _check_int(owner, "val_batch_size", val_batch_size, 1)
        if isinstance(seed, bool) or not isinstance(seed, int):
            raise ConfigError(f"{owner}: `seed` must be an integer, got {seed!r}")
        self.seed = int(seed)
        self.normalize = bool(normalize)
        self.uint8_transfer = bool(uint8_transfer)
        self.pin_memory = pin_memory
        #: drop the incomplete last training batch (fixed shapes: no recompilation of a compiled model)
        self.drop_last = True
        self.train_set: Any = None
        self.val_set: Any = None
        self.test_set: Any = None
        self.predict_set: Any = None
        self._made: set[str] = set()  # splits make_dataset was asked for (None = the DataModule has no such split)

    # -- what a subclass says ------------------------------------------------------------------------------
    def make_dataset(self, split: str) -> Dataset | Mapping[str, Dataset] | None:
        """The dataset of ``split`` (one of :data:`SPLITS`), a dict of datasets (combined loader), or None (no
        such split: no loader)."""
        raise NotImplementedError(f"{type(self).__name__} must implement make_dataset(split)")

    def collate_fn(self, split: str) -> Callable[[list[Any]], Any] | None:
        """Batching of ``split``'s samples (default: torch's ``default_collate``)."""
        return None

    def device_augment(self, batch: dict[str, Any]) -> dict[str, Any]:
        """Batched augmentation of a training batch on its device; images are float in [0, 1]. Default: none."""
        return batch

    def check_setup(self) -> None:
        """Called at the end of ``setup``: a place for checks that need the datasets."""

    # -- splits --------------------------------------------------------------------------------------------
    def setup(self, stage: str | None = None) -> None:
        for split in _STAGE_SPLITS.get(stage, SPLITS):
            if getattr(self, f"{split}_set") is None and split not in self._made:
                setattr(self, f"{split}_set", self.make_dataset(split))
                self._made.add(split)
                self._sampled_check(split)
        train = self.train_set
        if train is not None and stage in (None, "fit") and self.drop_last:
            for name, ds in (train.items() if isinstance(train, Mapping) else [("train", train)]):
                if len(ds) < self.batch_size:
                    raise ConfigError(
                        f"{type(self).__name__}: the {name} split has {len(ds)} samples, fewer than "
                        f"batch_size={self.batch_size} (the train loader drops incomplete batches)"
                    )
        self.check_setup()

    def _sampled_check(self, split: str) -> None:
        ds = getattr(self, f"{split}_set")
        if ds is None or self.setup_check_samples <= 0:
            return
        from vitlab.core.data.check import sampled_check

        seen: set[int] = set()
        for name, d in (ds.items() if isinstance(ds, Mapping) else [(split, ds)]):
            if id(d) not in seen:  # test/predict often reuse the val dataset
                seen.add(id(d))
                sampled_check(type(self).__name__, name, d, self.setup_check_samples)

    # -- loaders -------------------------------------------------------------------------------------------
    def _finish(self) -> Callable[[Any], Any] | None:
        return _UInt8Finish(tuple(self.image_keys)) if self.uint8_transfer else None

    def loader(self, dataset: Dataset, split: str, stream: int = 0) -> DataLoader:
        """The DataLoader of one dataset of ``split`` (every loader of every vitlab DataModule is built here).

        ``stream`` tells apart the datasets of a combined split (their orders and draws must differ).
        """
        train = split == "train"
        seed = self.seed + 1_000_003 * int(stream)
        return make_loader(
            SeededSamples(dataset, seed=seed, finish=self._finish()),
            batch_size=self.batch_size if train else self.val_batch_size,
            train=train,
            drop_last=train and self.drop_last,
            sampler=EpochShuffleSampler(len(dataset), seed=seed, with_epoch=True) if train else None,
            num_workers=self.num_workers,
            seed=seed,
            collate_fn=self.collate_fn(split),
            pin_memory=self.pin_memory,
        )

    def _split_loader(self, split: str) -> Any:
        if getattr(self, f"{split}_set") is None and split not in self._made:
            self.setup(_SPLIT_STAGE[split])  # a loader asked for outside a Trainer: build its split now
        ds = getattr(self, f"{split}_set")
        if ds is None:
            return None
        if isinstance(ds, Mapping):
            return CombinedLoader({k: self.loader(v, split, stream=i) for i, (k, v) in enumerate(ds.items())},
                                  mode="max_size_cycle")
        return self.loader(ds, split)

    def _require(self, split: str) -> Any:
        loader = self._split_loader(split)
        if loader is None:
            raise ConfigError(f"{type(self).__name__}: this DataModule has no {split} split (its configuration "
                              f"gives no {split} data)")
        return loader

    def train_dataloader(self) -> Any:
        return self.resumable(self._require("train"))

    def val_dataloader(self) -> Any:
        loader = self._split_loader("val")
        return [] if loader is None else loader  # no validation split: Lightning skips validation

    def test_dataloader(self) -> Any:
        return self._require("test")

    def predict_dataloader(self) -> Any:
        return self._require("predict")

    # -- on the device -------------------------------------------------------------------------------------
    def normalize_batch(self, batch: Any) -> Any:
        """ImageNet-normalise :attr:`image_keys` of a (float, [0, 1]) batch or of each sub-batch."""
        return _per_sub_batch(batch, lambda b: imagenet_normalize(b, keys=tuple(self.image_keys)))

    def on_after_batch_transfer(self, batch: Any, dataloader_idx: int) -> Any:
        keys = tuple(self.image_keys)
        batch = _per_sub_batch(batch, lambda b: to_float_images(b, keys))
        trainer = getattr(self, "trainer", None)
        if trainer is not None and trainer.training:
            batch = self.device_augment(batch)
        return self.normalize_batch(batch) if self.normalize else batch
