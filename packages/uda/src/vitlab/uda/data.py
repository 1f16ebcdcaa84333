"""The UDA DataModule: GTA5 / SYNTHIA / a plain folder (labelled source) -> Cityscapes / a plain folder (unlabelled
target, labelled validation).

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
    FolderSegmentationDataModule,
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

#: the targets UDADataModule reads
TARGETS = ("cityscapes", "folder")

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
    """GTA5 / SYNTHIA / a folder (source, labelled) -> Cityscapes / a folder (target, unlabelled for training;
    val labelled).

    One's own data needs no code: ``source: folder`` and/or ``target: folder`` read the plain-folder layout of
    :class:`vitlab.core.data.SegmentationFolder` (``images/<split>/``, ``labels/<split>/`` class-id PNGs; the
    target's training split needs no labels), with the class list in ``classes`` (or each root's
    ``classes.txt``). ``classes``, ``palette``, ``ignore_color``, ``ignore_index`` and ``reduce_zero_label``
    describe the label files of both folders (one class list for both domains, as UDA needs); with a Cityscapes
    target the source folder must hold Cityscapes train ids (19 classes).

    Args:
        source: ``"gta5"``, ``"synthia"`` or ``"folder"``.
        source_root: the source dataset root (layouts in :func:`gta_pairs` / :func:`synthia_pairs` /
            :class:`~vitlab.core.data.SegmentationFolder`).
        target_root: the target root: Cityscapes (``leftImg8bit/``, ``gtFine/``) or a folder.
        target: ``"cityscapes"`` or ``"folder"``.
        source_split: the split of a folder source that trains (``images/<source_split>``).
        classes, palette, ignore_color, ignore_index, reduce_zero_label: the label files of folder datasets
            (:class:`~vitlab.core.data.SegmentationFolder`).
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
                 val_batch_size: int = 1, num_workers: int = 4, normalize: bool = True, seed: int = 0,
                 target: str = "cityscapes", source_split: str = "train", classes: list[str] | None = None,
                 palette: list[list[int]] | None = None, ignore_color: list[int] | None = None,
                 ignore_index: int = 255, reduce_zero_label: bool = False) -> None:
        super().__init__(batch_size=batch_size, num_workers=num_workers, seed=seed, val_batch_size=val_batch_size,
                         normalize=normalize)
        if source not in (*SOURCES, "folder"):
            raise ValueError(f"UDADataModule: source must be one of {(*SOURCES, 'folder')}, got {source!r}")
        if target not in TARGETS:
            raise ValueError(f"UDADataModule: target must be one of {TARGETS}, got {target!r}")
        self.save_hyperparameters()
        self.source = source
        self.source_root = Path(source_root)
        self.source_split = source_split
        if source == "folder" and source_scale is None:
            raise ValueError("UDADataModule: a folder source needs `source_scale` ([long side, short side] of the "
                             "keep-ratio resize before the crop; GTA5 uses [1280, 720])")
        self.source_transform = UDATrainTransform(crop_size, source_scale or SOURCE_SCALE[source], cat_max_ratio,
                                                  flip_prob)
        self.target_transform = UDATrainTransform(crop_size, target_scale, 1.0, flip_prob)
        size = self.source_transform.crop_size
        folder = dict(classes=classes, palette=palette, ignore_color=ignore_color, ignore_index=ignore_index,
                      reduce_zero_label=reduce_zero_label, size=size, num_workers=num_workers)
        if target == "folder":
            self.target_data = FolderSegmentationDataModule(target_root, val_split=val_split, test_split=val_split,
                                                            eval_scale=target_scale, val_batch_size=val_batch_size,
                                                            **folder)
        else:
            self.target_data = CityscapesDataModule(target_root, size=size, label_type=label_type,
                                                    val_split=val_split, test_split=val_split,
                                                    eval_scale=target_scale, val_batch_size=val_batch_size,
                                                    num_workers=num_workers)
        self.target_data.eval_transform = DenseEvalTransform("whole", scale=target_scale)
        self.source_folder = FolderSegmentationDataModule(source_root, **folder) if source == "folder" else None
        names = (self.source_folder or self.target_data).class_names
        if self.source_folder is not None and tuple(self.target_data.class_names) != tuple(names):
            raise ValueError(f"UDADataModule: the source folder {self.source_root} has {len(names)} classes "
                             f"{list(names)[:4]}... but the target has {self.target_data.num_classes} "
                             f"{list(self.target_data.class_names)[:4]}...; both domains need one class list")
        if self.source_folder is None and len(names) != len(CLASS_NAMES):
            raise ValueError(f"UDADataModule: a {source} source has the 19 Cityscapes train classes, but the target "
                             f"folder {target_root} lists {len(names)}")
        self._class_names = tuple(names)
        self.target_train_split = target_train_split
        self.rcs_args = (rcs_temperature, rcs_min_pixels, rcs_min_crop_ratio) if rcs else None

    @property
    def cityscapes(self) -> CityscapesDataModule:
        """The Cityscapes target (``target: cityscapes``)."""
        if not isinstance(self.target_data, CityscapesDataModule):
            raise AttributeError("UDADataModule: the target is a folder, not Cityscapes")
        return self.target_data

    @property
    def num_classes(self) -> int:
        return len(self._class_names)

    @property
    def class_names(self) -> tuple[str, ...]:
        return self._class_names

    @property
    def eval_classes(self) -> tuple[int, ...]:
        """Classes of the headline metric: the 16 SYNTHIA classes for SYNTHIA, every class otherwise."""
        return SYNTHIA_CLASSES if self.source == "synthia" else tuple(range(self.num_classes))

    def source_pairs(self) -> list[tuple[Path, Path]]:
        if self.source_folder is not None:
            return self.source_folder.pairs(self.source_split)
        return gta_pairs(self.source_root) if self.source == "gta5" else synthia_pairs(self.source_root)

    def source_decoder(self) -> Callable[[Path], np.ndarray]:
        if self.source_folder is not None:
            return self.source_folder.decoder()
        return decode_gta_label if self.source == "gta5" else decode_synthia_label

    def make_dataset(self, split: str) -> Dataset:
        """Train: source (labelled) + target (images only) pairs; val, test and predict: labelled Cityscapes."""
        if split != "train":
            if split != "val" and self.val_set is not None:
                return self.val_set
            return self.target_data.dataset(self.target_data.splits["val"])
        pairs = self.source_pairs()
        source = DenseFilesDataset(pairs, "semantic", self.source_decoder(), self.source_transform)
        if len(source) < self.batch_size:
            raise ValueError(f"UDADataModule: {self.source_root} has {len(source)} source images, fewer than "
                             f"batch_size={self.batch_size}")
        rcs = None
        if self.rcs_args is not None:
            t, min_px, ratio = self.rcs_args
            stats = class_stats(pairs, self.source_decoder(), self.source_root, self.num_classes)
            rcs = RareClassSampler(stats, t, min_px, ratio)
        if isinstance(self.target_data, CityscapesDataModule):
            targets = [img for img, _ in self.target_data.pairs(self.target_train_split)]
        else:  # unlabelled: images only
            targets = self.target_data.folder.images(self.target_train_split)
        return SourceTargetDataset(source, targets, self.target_transform, rcs)

    def collate_fn(self, split: str) -> Callable[[list[Any]], Any] | None:
        return None if split == "train" else functools.partial(dense_collate, size_divisor=32)
