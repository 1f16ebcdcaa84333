"""The UDA DataModule: GTA5 / SYNTHIA (labelled source) -> Cityscapes (unlabelled target, labelled validation).

Datasets, label maps, the DAFormer train pipeline and rare class sampling are in :mod:`vitlab.uda.datasets`;
loaders, training order, per-sample seeding, uint8 transfer and device normalisation of every sub-batch come from
core's :class:`~vitlab.core.data.VitlabDataModule`.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from torch.utils.data import Dataset

from vitlab.core.data import (
    CityscapesDataModule,
    DenseEvalTransform,
    DenseFilesDataset,
    VitlabDataModule,
    dense_collate,
)
from vitlab.uda.datasets import (
    CLASS_NAMES,
    GTA_TO_TRAIN_ID,
    SOURCE_SCALE,
    SOURCES,
    SYNTHIA13_CLASSES,
    SYNTHIA_CLASSES,
    SYNTHIA_TO_TRAIN_ID,
    RareClassSampler,
    SourceTargetDataset,
    UDATrainTransform,
    class_stats,
    decode_gta_label,
    decode_synthia_label,
    gta_pairs,
    rcs_probabilities,
    synthia_pairs,
)

__all__ = [
    "CLASS_NAMES",
    "GTA_TO_TRAIN_ID",
    "SYNTHIA13_CLASSES",
    "SYNTHIA_CLASSES",
    "SYNTHIA_TO_TRAIN_ID",
    "RareClassSampler",
    "UDADataModule",
    "UDATrainTransform",
    "class_stats",
    "decode_gta_label",
    "decode_synthia_label",
    "gta_pairs",
    "rcs_probabilities",
    "synthia_pairs",
]


class UDADataModule(VitlabDataModule):
    """GTA5 / SYNTHIA (source, labelled) -> Cityscapes (target, unlabelled for training; val labelled).

    Args:
        source: ``"gta5"`` or ``"synthia"``.
        source_root: the source dataset root (layouts in :func:`gta_pairs` / :func:`synthia_pairs`).
        target_root: the Cityscapes root (``leftImg8bit/``, ``gtFine/``).
        crop_size: train crop (H, W) or int.
        source_scale: keep-ratio resize of source images (default: DAFormer's per dataset).
        target_scale: keep-ratio resize of target train images and of the validation images ((1024, 512)).
        cat_max_ratio: source crop re-drawing (:class:`UDATrainTransform`).
        flip_prob: horizontal flip probability.
        rcs: rare class sampling on; ``rcs_temperature``, ``rcs_min_pixels``, ``rcs_min_crop_ratio`` as in
            DAFormer (0.01, 3000, 0.5; HRDA/MIC use min_crop_ratio 2.0). ``rcs_min_pixels`` counts pixels at the
            native label resolution.
        label_type: Cityscapes ground truth files, ``"labelTrainIds"`` or ``"labelIds"``.
        target_train_split, val_split: Cityscapes splits.
        batch_size: source and target images per step each (2 in DAFormer).
        val_batch_size: validation batch size.
        num_workers: loader workers.
        normalize: ImageNet-normalise images on the device.
        seed: shuffle seed of the loaders.
    """

    def __init__(self, source: str = "gta5", source_root: str = "data/gta", target_root: str = "data/cityscapes",
                 crop_size: int | tuple[int, int] = 512, source_scale: tuple[int, int] | None = None,
                 target_scale: tuple[int, int] | None = (1024, 512), cat_max_ratio: float = 0.75,
                 flip_prob: float = 0.5, rcs: bool = True, rcs_temperature: float = 0.01, rcs_min_pixels: int = 3000,
                 rcs_min_crop_ratio: float = 0.5, label_type: str = "labelTrainIds",
                 target_train_split: str = "train", val_split: str = "val", batch_size: int = 2,
                 val_batch_size: int = 1, num_workers: int = 4, normalize: bool = True, seed: int = 0) -> None:
        super().__init__(batch_size=batch_size, num_workers=num_workers, seed=seed, val_batch_size=val_batch_size,
                         normalize=normalize)
        if source not in SOURCES:
            raise ValueError(f"UDADataModule: source must be one of {SOURCES}, got {source!r}")
        self.save_hyperparameters()
        self.source = source
        self.source_root = Path(source_root)
        self.source_transform = UDATrainTransform(crop_size, source_scale or SOURCE_SCALE[source], cat_max_ratio,
                                                  flip_prob)
        self.target_transform = UDATrainTransform(crop_size, target_scale, 1.0, flip_prob)
        self.cityscapes = CityscapesDataModule(target_root, size=self.source_transform.crop_size, label_type=label_type,
                                               val_split=val_split, test_split=val_split, eval_scale=target_scale,
                                               val_batch_size=val_batch_size, num_workers=num_workers)
        self.cityscapes.eval_transform = DenseEvalTransform("whole", scale=target_scale)
        self.target_train_split = target_train_split
        self.rcs_args = (rcs_temperature, rcs_min_pixels, rcs_min_crop_ratio) if rcs else None

    @property
    def num_classes(self) -> int:
        return len(CLASS_NAMES)

    @property
    def class_names(self) -> tuple[str, ...]:
        return CLASS_NAMES

    @property
    def eval_classes(self) -> tuple[int, ...]:
        """Classes of the headline metric: 19 for GTA5, the 16 SYNTHIA classes for SYNTHIA."""
        return tuple(range(19)) if self.source == "gta5" else SYNTHIA_CLASSES

    def source_pairs(self) -> list[tuple[Path, Path]]:
        return gta_pairs(self.source_root) if self.source == "gta5" else synthia_pairs(self.source_root)

    def source_decoder(self) -> Callable[[Path], np.ndarray]:
        return decode_gta_label if self.source == "gta5" else decode_synthia_label

    def make_dataset(self, split: str) -> Dataset:
        """Train: source (labelled) + target (images only) pairs; val, test and predict: labelled Cityscapes."""
        if split != "train":
            if split != "val" and self.val_set is not None:
                return self.val_set
            return self.cityscapes.dataset(self.cityscapes.splits["val"])
        pairs = self.source_pairs()
        source = DenseFilesDataset(pairs, "semantic", self.source_decoder(), self.source_transform)
        if len(source) < self.batch_size:
            raise ValueError(f"UDADataModule: {self.source_root} has {len(source)} source images, fewer than "
                             f"batch_size={self.batch_size}")
        rcs = None
        if self.rcs_args is not None:
            t, min_px, ratio = self.rcs_args
            rcs = RareClassSampler(class_stats(pairs, self.source_decoder(), self.source_root), t, min_px, ratio)
        targets = [img for img, _ in self.cityscapes.pairs(self.target_train_split)]
        return SourceTargetDataset(source, targets, self.target_transform, rcs)

    def collate_fn(self, split: str) -> Callable[[list[Any]], Any] | None:
        return None if split == "train" else functools.partial(dense_collate, size_divisor=32)
