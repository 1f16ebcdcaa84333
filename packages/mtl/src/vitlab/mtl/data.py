"""Multi-task DataModules: PASCAL-Context MT and NYUD-v2 MT in their on-disk layouts, and synthetic multi-task scenes.

The datasets are in :mod:`vitlab.mtl.datasets`, the augmentations in :mod:`vitlab.mtl.transforms`; loaders,
training order, per-sample seeding, uint8 transfer and device normalisation come from core's
:class:`~vitlab.core.data.VitlabDataModule`.
"""

from __future__ import annotations

from typing import Any

from torch.utils.data import Dataset

from vitlab.core.data import BatchPhotometricDistortion, SyntheticScenesDataModule, VitlabDataModule
from vitlab.mtl.datasets import NYUDMT, PASCALContextMT
from vitlab.mtl.transforms import AUGMENTATIONS, MultiTaskTransform

__all__ = [
    "MultiTaskDataModule",
    "NYUDMTDataModule",
    "PASCALContextMTDataModule",
    "SyntheticMultiTaskDataModule",
]


class MultiTaskDataModule(VitlabDataModule):
    """Train/val datasets of a multi-task dataset; loaders, uint8 transfer and device normalisation are core's
    (:class:`~vitlab.core.data.VitlabDataModule`).

    ``photometric_on_device=True`` (``invpt`` only) runs the photometric distortion once per training batch on
    the device before normalisation, not per sample in the workers (same law; on the CPU it also covers the
    pixels outside the warped image, so the whole image is jittered here too).
    """

    #: a base class: not a DataModule of its own (set only in the class body of bases)
    abstract = True

    def __init__(self, root: str, tasks: list[str] | None, size: int | tuple[int, int], batch_size: int,
                 num_workers: int, augmentation: str, train_split: str, val_split: str, seed: int,
                 photometric_on_device: bool = False) -> None:
        super().__init__(batch_size=batch_size, num_workers=num_workers, seed=seed)
        if augmentation not in AUGMENTATIONS:
            raise ValueError(f"augmentation must be one of {AUGMENTATIONS}, got {augmentation!r}")
        self.root = root
        self.tasks = tasks
        self.size = (size, size) if isinstance(size, int) else tuple(size)
        self.augmentation = augmentation
        self.train_split, self.val_split = train_split, val_split
        self.photometric_on_device = bool(photometric_on_device) and augmentation == "invpt"
        self.photometric_augment = BatchPhotometricDistortion() if self.photometric_on_device else None

    def transform(self, train: bool, **kwargs: Any) -> MultiTaskTransform:
        """The train or eval transform (``kwargs``: the dataset's geometry settings)."""
        return MultiTaskTransform(self.size, self.augmentation, train, photometric=not self.photometric_on_device,
                                  **kwargs)

    def make(self, split: str, train: bool) -> Dataset:
        raise NotImplementedError

    def make_dataset(self, split: str) -> Dataset:
        """Train on ``train_split``; validation, test and predict run on ``val_split``."""
        if split == "train":
            return self.make(self.train_split, True)
        if split != "val" and self.val_set is not None:
            return self.val_set
        return self.make(self.val_split, False)

    def device_augment(self, batch: dict[str, Any]) -> dict[str, Any]:
        return self.photometric_augment(batch) if self.photometric_augment is not None else batch


class PASCALContextMTDataModule(MultiTaskDataModule):
    """PASCAL-Context MT: train 4,998 / val 5,105 images at ``size`` (448 for MTLoRA/TADFormer, 512 for
    MTI-Net/InvPT). See :class:`PASCALContextMT` and :class:`MultiTaskTransform`."""

    def __init__(self, root: str = "data/PASCAL_MT", tasks: list[str] | None = None, size: int | tuple[int, int] = 448,
                 batch_size: int = 32, num_workers: int = 4, augmentation: str = "mtinet", db_info: str | None = None,
                 train_split: str = "train", val_split: str = "val", seed: int = 0,
                 photometric_on_device: bool = False) -> None:
        super().__init__(root, tasks, size, batch_size, num_workers, augmentation, train_split, val_split, seed,
                         photometric_on_device)
        self.db_info = db_info
        self.save_hyperparameters()

    def make(self, split: str, train: bool) -> Dataset:
        return PASCALContextMT(self.root, split, self.tasks, self.db_info, self.transform(train))


class NYUDMTDataModule(MultiTaskDataModule):
    """NYUD-v2 MT at ``size`` (480×640 MTI-Net, 448×576 InvPT). ``split_sizes`` None asserts the standard
    795 train / 654 val; ``{}`` skips the check. Augmentation ``mtinet`` here is flip + a random scale in
    [1, 1.5] without rotation (MTI-Net's NYUD recipe draws the scale from {1, 1.2, 1.5})."""

    def __init__(self, root: str = "data/NYUD_MT", tasks: list[str] | None = None,
                 size: int | tuple[int, int] = (480, 640), batch_size: int = 8, num_workers: int = 4,
                 augmentation: str = "mtinet", split_sizes: dict[str, int] | None = None,
                 train_split: str = "train", val_split: str = "val", seed: int = 0,
                 photometric_on_device: bool = False) -> None:
        super().__init__(root, tasks, size, batch_size, num_workers, augmentation, train_split, val_split, seed,
                         photometric_on_device)
        self.split_sizes = {"train": 795, "val": 654} if split_sizes is None else split_sizes
        self.save_hyperparameters()

    def make(self, split: str, train: bool) -> Dataset:
        tf = self.transform(train, rotation=0.0, scale_range=(1.0, 1.5))
        return NYUDMT(self.root, split, self.tasks, self.split_sizes or None, tf)


_SYNTH_KEYS = {"semantic": "semseg", "parts": "human_parts", "saliency": "sal", "edges": "edge",
               "normals": "normals", "depth": "depth", "image": "image", "index": "index"}


class SyntheticMultiTaskDataModule(SyntheticScenesDataModule):
    """Core's :class:`~vitlab.core.data.SyntheticScenesDataModule` with every multi-task target, under the task
    names of this package: ``semseg`` (7 classes), ``human_parts`` (3: background + two object halves), ``sal``,
    ``edge``, ``normals``, ``depth``. Arguments are those of the core DataModule (no ``modalities``)."""

    def __init__(self, size: int | tuple[int, int] = 64, batch_size: int = 16, num_workers: int = 0,
                 train_samples: int = 2000, val_samples: int = 200, test_samples: int = 200,
                 predict_samples: int = 16, seed: int = 0, min_objects: int = 2, max_objects: int = 5) -> None:
        super().__init__(modalities=["image", "semantic", "parts", "saliency", "edges", "normals", "depth"],
                         size=size, batch_size=batch_size, num_workers=num_workers, train_samples=train_samples,
                         val_samples=val_samples, test_samples=test_samples, predict_samples=predict_samples,
                         seed=seed, min_objects=min_objects, max_objects=max_objects)

    def on_after_batch_transfer(self, batch: Any, dataloader_idx: int) -> Any:
        batch = super().on_after_batch_transfer(batch, dataloader_idx)
        return {_SYNTH_KEYS.get(k, k): v for k, v in batch.items()}
