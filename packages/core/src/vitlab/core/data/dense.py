"""Real dense-prediction datasets (ADE20K, Cityscapes, NYU Depth v2) as files -> samples, and their DataModules.

Samples are dicts of tensors: ``image`` (3, H, W) float in [0, 1] (sent to the device as uint8 and
ImageNet-normalised there by :class:`~vitlab.core.data.VitlabDataModule`),
plus ``semantic`` (H, W) int64 with 255 = ignore, or ``depth`` (1, H, W) float metres with +inf = invalid.

The train pipeline (:mod:`vitlab.core.data.transforms`) follows mmsegmentation's recipe (RandomResize with a ratio range -> RandomCrop ->
RandomFlip -> PhotoMetricDistortion -> pad); every geometric step moves the image and its dense targets
together. Targets are always resized with nearest-neighbour sampling, so a resized label or depth map only
holds values of the original one (invalid depth is never blended into valid depth). With
``photometric_on_device`` the workers skip the photometric step and the DataModule applies the same law to
whole training batches on the device (:class:`~vitlab.core.data.BatchPhotometricDistortion`).
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from vitlab.core.data.base import VitlabDataModule
from vitlab.core.data.gpu_augment import BatchPhotometricDistortion
from vitlab.core.data.io import DatasetFormatError, read_image_tensor, require_dir
from vitlab.core.data.labels import (
    CITYSCAPES_CLASS_NAMES,
    decode_ade20k_label,
    decode_cityscapes_label,
    decode_nyu_depth,
)
from vitlab.core.data.transforms import (
    VALID_KEY,
    DenseEvalTransform,
    DenseTrainTransform,
    dense_collate,
    pair,
)

__all__ = [
    "ADE20KDataModule",
    "CityscapesDataModule",
    "DenseDataModule",
    "DenseFilesDataset",
    "NYUDepthDataModule",
]

Sample = dict[str, torch.Tensor]
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png")


class DenseFilesDataset(Dataset):
    """(image file, target file) pairs -> ``{"image": (3,H,W) [0,1], target_key: decoded target}``.

    ``decode`` turns a target path into a numpy map ((H, W) labels or (1, H, W) depth); image and target
    sizes must agree (an error names both files).
    """

    def __init__(self, pairs: Sequence[tuple[Path, Path]], target_key: str,
                 decode: Callable[[Path], np.ndarray], transform: Callable[[Sample], Sample] | None = None) -> None:
        self.pairs = list(pairs)
        self.target_key = target_key
        self.decode = decode
        self.transform = transform

    def __len__(self) -> int:
        return len(self.pairs)

    def load(self, index: int) -> Sample:
        """The untransformed sample."""
        image_path, target_path = self.pairs[index]
        image = read_image_tensor(image_path, uint8=False)
        target = self.decode(target_path)
        if tuple(target.shape[-2:]) != tuple(image.shape[-2:]):
            raise DatasetFormatError(
                f"{target_path}: ground truth is {target.shape[-2]}x{target.shape[-1]} but its image "
                f"{image_path} is {image.shape[-2]}x{image.shape[-1]}; they must have the same size"
            )
        return {"image": image, self.target_key: torch.from_numpy(np.ascontiguousarray(target))}

    def __getitem__(self, index: int) -> Sample:
        sample = self.load(index)
        return self.transform(sample) if self.transform is not None else sample


def _match(images: dict[str, Path], targets: dict[str, Path], image_dir: Path, target_dir: Path,
           layout: str) -> list[tuple[Path, Path]]:
    """Pair files by key; unpaired files on either side are an error naming them."""
    if not images:
        raise DatasetFormatError(f"{image_dir}: no images ({', '.join(IMAGE_EXTENSIONS)}); expected layout:\n{layout}")
    only_img = sorted(set(images) - set(targets))
    only_tgt = sorted(set(targets) - set(images))
    if only_img or only_tgt:
        msg = []
        if only_img:
            msg.append(f"{len(only_img)} image(s) without ground truth in {target_dir}, e.g. "
                       f"{[str(images[k]) for k in only_img[:3]]}")
        if only_tgt:
            msg.append(f"{len(only_tgt)} ground-truth file(s) without an image in {image_dir}, e.g. "
                       f"{[str(targets[k]) for k in only_tgt[:3]]}")
        raise DatasetFormatError("; ".join(msg) + f"; expected layout:\n{layout}")
    return [(images[k], targets[k]) for k in sorted(images)]


def _files(folder: Path, suffixes: Sequence[str], recursive: bool = False) -> list[Path]:
    it = folder.rglob("*") if recursive else folder.iterdir()
    return sorted(p for p in it if p.is_file() and p.name.lower().endswith(tuple(s.lower() for s in suffixes)))


class DenseDataModule(VitlabDataModule):
    """(image, target) files of a real dataset: the split lists, the decoder and the mmseg-style transforms.

    Subclasses implement :meth:`pairs` (split -> file pairs) and :meth:`decoder`. Loaders, the training order,
    per-sample seeding, uint8 transfer and device normalisation come from :class:`VitlabDataModule`. Val/test
    batches are padded to a multiple of ``size_divisor`` (:func:`~vitlab.core.data.transforms.dense_collate`).

    ``photometric_on_device=True`` (with ``photometric``; the GPU recipes) takes the per-pixel photometric
    jitter out of the CPU workers: it runs once per training batch on the device, before normalisation
    (:class:`~vitlab.core.data.BatchPhotometricDistortion`, the same mmseg law per image, no host sync). Padded
    pixels keep the pad value, as on the CPU path. Val/test/predict batches are not jittered.
    """

    #: a base class: not a DataModule of its own (set only in the class body of bases)
    abstract = True

    target_key = "semantic"
    layout = ""

    def __init__(self, root: str, size: int | tuple[int, int], batch_size: int, num_workers: int,
                 train_split: str, val_split: str, test_split: str, scale: tuple[int, int] | None,
                 ratio_range: tuple[float, float] | None, flip_prob: float, photometric: bool, eval_mode: str,
                 eval_scale: tuple[int, int] | None, val_batch_size: int | None, size_divisor: int,
                 normalize: bool, seed: int, photometric_on_device: bool = False) -> None:
        super().__init__(batch_size=batch_size, num_workers=num_workers, seed=seed, val_batch_size=val_batch_size,
                         normalize=normalize)
        if size_divisor < 1:
            raise ValueError(f"{type(self).__name__}: size_divisor must be >= 1, got {size_divisor}")
        self.root = Path(root)
        self.size = pair(size, "size")
        self.splits = {"train": train_split, "val": val_split, "test": test_split, "predict": test_split}
        self.size_divisor = size_divisor
        self.photometric_on_device = bool(photometric_on_device) and bool(photometric)
        self.photometric_augment = BatchPhotometricDistortion() if self.photometric_on_device else None
        self.train_transform = DenseTrainTransform(self.size, scale, ratio_range, flip_prob,
                                                   photometric and not self.photometric_on_device,
                                                   valid_mask=self.photometric_on_device)
        self.eval_transform = DenseEvalTransform(eval_mode, self.size, eval_scale)

    @property
    def num_classes(self) -> int:
        raise NotImplementedError

    def pairs(self, split: str) -> list[tuple[Path, Path]]:
        raise NotImplementedError

    def decoder(self) -> Callable[[Path], np.ndarray]:
        raise NotImplementedError

    def _check_root(self) -> None:
        require_dir(self.root, self.layout, "dataset root")

    def dataset(self, split: str, train: bool = False) -> DenseFilesDataset:
        """The dataset of the folder/list ``split`` (e.g. ``"training"``) with the train or eval transform."""
        self._check_root()
        transform = self.train_transform if train else self.eval_transform
        return DenseFilesDataset(self.pairs(split), self.target_key, self.decoder(), transform)

    def make_dataset(self, split: str) -> DenseFilesDataset:
        """Predictions run on the test split (with its eval transform)."""
        return self.dataset(self.splits[split], train=split == "train")

    def collate_fn(self, split: str) -> Callable[[list[Any]], Any]:
        # train crops already share one size; eval batches are padded to a multiple of size_divisor
        return functools.partial(dense_collate, size_divisor=1 if split == "train" else self.size_divisor)

    def device_augment(self, batch: dict[str, Any]) -> dict[str, Any]:
        batch = dict(batch)
        valid = batch.pop(VALID_KEY, None)  # only for the device jitter; the model never sees it
        if self.photometric_augment is not None:
            batch = self.photometric_augment(batch, valid)
        return batch

    def on_after_batch_transfer(self, batch: Any, dataloader_idx: int) -> Any:
        batch = super().on_after_batch_transfer(batch, dataloader_idx)
        if isinstance(batch, dict) and VALID_KEY in batch:  # eval batches never carry it; be safe
            batch = {k: v for k, v in batch.items() if k != VALID_KEY}
        return batch


_ADE_LAYOUT = """root/                           (ADEChallengeData2016)
  images/{training,validation}/ADE_*.jpg
  annotations/{training,validation}/ADE_*.png   uint8, 0 = other, 1..150 = classes"""


class ADE20KDataModule(DenseDataModule):
    """ADE20K SceneParsing (ADEChallengeData2016, 150 classes) for semantic segmentation.

    Labels follow mmseg's ``reduce_zero_label``: 0 ("other") -> 255, 1..150 -> 0..149. Defaults are the
    mmseg ADE20K recipe: keep-ratio resize to (2048, 512) x U(0.5, 2.0), 512x512 crop, flip, photometric
    distortion; evaluation resizes the short side to 512 (``eval_mode="whole"``, padded per batch to
    ``size_divisor``). The test loader uses the validation split (the test release has no labels).

    Batches: ``image`` (B, 3, H, W), ``semantic`` (B, H, W) int64.
    """

    layout = _ADE_LAYOUT

    def __init__(self, root: str, size: int | tuple[int, int] = 512, batch_size: int = 16, num_workers: int = 4,
                 train_split: str = "training", val_split: str = "validation", test_split: str = "validation",
                 scale: tuple[int, int] | None = (2048, 512), ratio_range: tuple[float, float] | None = (0.5, 2.0),
                 flip_prob: float = 0.5, photometric: bool = True, eval_mode: str = "whole",
                 eval_scale: tuple[int, int] | None = (2048, 512), val_batch_size: int | None = 1,
                 size_divisor: int = 16, reduce_zero_label: bool = True, normalize: bool = True,
                 seed: int = 0, photometric_on_device: bool = False) -> None:
        super().__init__(root, size, batch_size, num_workers, train_split, val_split, test_split, scale,
                         ratio_range, flip_prob, photometric, eval_mode, eval_scale, val_batch_size,
                         size_divisor, normalize, seed, photometric_on_device)
        self.save_hyperparameters()
        self.reduce_zero_label = reduce_zero_label

    @property
    def num_classes(self) -> int:
        return 150 if self.reduce_zero_label else 151

    def decoder(self) -> Callable[[Path], np.ndarray]:
        return functools.partial(decode_ade20k_label, reduce_zero_label=self.reduce_zero_label)

    def pairs(self, split: str) -> list[tuple[Path, Path]]:
        img_dir = require_dir(self.root / "images" / split, self.layout, f"image folder of split {split!r}")
        ann_dir = require_dir(self.root / "annotations" / split, self.layout,
                               f"annotation folder of split {split!r}")
        images = {p.stem: p for p in _files(img_dir, IMAGE_EXTENSIONS)}
        targets = {p.stem: p for p in _files(ann_dir, (".png",))}
        return _match(images, targets, img_dir, ann_dir, self.layout)


_CS_LAYOUT = """root/
  leftImg8bit/{train,val,test}/<city>/<city>_<seq>_<frame>_leftImg8bit.png
  gtFine/{train,val,test}/<city>/<city>_<seq>_<frame>_gtFine_labelTrainIds.png   uint8 0..18, 255 = ignore
  (or *_gtFine_labelIds.png with label_type='labelIds')"""


class CityscapesDataModule(DenseDataModule):
    """Cityscapes fine annotations, 19 train classes (:data:`CITYSCAPES_CLASS_NAMES`), 255 = ignore.

    ``label_type="labelTrainIds"`` reads the ``*_gtFine_labelTrainIds.png`` files made by cityscapesscripts'
    ``createTrainIdLabelImgs``; ``"labelIds"`` maps the raw ``*_gtFine_labelIds.png`` with
    :data:`CITYSCAPES_LABEL_TO_TRAIN_ID`. Defaults follow mmseg's Cityscapes recipe: keep-ratio resize to
    (2048, 1024) x U(0.5, 2.0), 512x1024 crop, flip, photometric; evaluation on the whole image at
    (2048, 1024) (``eval_scale``). The test loader uses ``val`` (test labels are not public).
    """

    layout = _CS_LAYOUT

    def __init__(self, root: str, size: int | tuple[int, int] = (512, 1024), batch_size: int = 8,
                 num_workers: int = 4, train_split: str = "train", val_split: str = "val", test_split: str = "val",
                 label_type: str = "labelTrainIds", scale: tuple[int, int] | None = (2048, 1024),
                 ratio_range: tuple[float, float] | None = (0.5, 2.0), flip_prob: float = 0.5,
                 photometric: bool = True, eval_mode: str = "whole", eval_scale: tuple[int, int] | None = (2048, 1024),
                 val_batch_size: int | None = 1, size_divisor: int = 16, normalize: bool = True,
                 seed: int = 0, photometric_on_device: bool = False) -> None:
        if label_type not in ("labelTrainIds", "labelIds"):
            raise ValueError(f"label_type must be 'labelTrainIds' or 'labelIds', got {label_type!r}")
        super().__init__(root, size, batch_size, num_workers, train_split, val_split, test_split, scale,
                         ratio_range, flip_prob, photometric, eval_mode, eval_scale, val_batch_size,
                         size_divisor, normalize, seed, photometric_on_device)
        self.save_hyperparameters()
        self.label_type = label_type

    @property
    def num_classes(self) -> int:
        return len(CITYSCAPES_CLASS_NAMES)

    @property
    def class_names(self) -> tuple[str, ...]:
        return CITYSCAPES_CLASS_NAMES

    def decoder(self) -> Callable[[Path], np.ndarray]:
        return functools.partial(decode_cityscapes_label, label_type=self.label_type)

    def pairs(self, split: str) -> list[tuple[Path, Path]]:
        img_dir = require_dir(self.root / "leftImg8bit" / split, self.layout, f"image folder of split {split!r}")
        gt_dir = require_dir(self.root / "gtFine" / split, self.layout, f"gtFine folder of split {split!r}")
        img_suffix, gt_suffix = "_leftImg8bit.png", f"_gtFine_{self.label_type}.png"

        def key(p: Path, base: Path, suffix: str) -> str:
            return str(p.relative_to(base))[: -len(suffix)]

        images = {key(p, img_dir, img_suffix): p for p in _files(img_dir, (img_suffix,), recursive=True)}
        targets = {key(p, gt_dir, gt_suffix): p for p in _files(gt_dir, (gt_suffix,), recursive=True)}
        return _match(images, targets, img_dir, gt_dir, self.layout)


_NYU_LAYOUT = """root/                           (mmseg NYU layout; depth PNG uint16 millimetres, 0 = invalid)
  images/<split>/<name>.jpg       + annotations/<split>/<name>.png      (split folders, e.g. train/test), or
  images/<name>.jpg               + annotations/<name>.png              with <root>/<split>.txt listing <name>s
                                                                        (one per line), or split 'all' = every
                                                                        image directly under images/"""


class NYUDepthDataModule(DenseDataModule):
    """NYU Depth v2 monocular depth in mmsegmentation's layout (``tools/dataset_converters/nyu.py``).

    A split ``s`` is found as, in order: folders ``images/s`` + ``annotations/s``; a list file
    ``<root>/s.txt`` of names (relative to ``images/``, extension optional); or, for ``s == "all"``, every
    image directly under ``images/`` (the flat layout of small samples). Depth = ``v / depth_scale``
    metres; 0 and depths beyond ``max_depth`` become +inf (invalid).

    Metric depth depends on the focal length, so by default there is no scale augmentation
    (``ratio_range=None``): training takes random ``size`` crops of the native 480x640 frames with flips and
    photometric jitter (BTS/GLPDepth style); evaluation uses the whole image. ``num_classes`` is 0 (no
    semantic labels in this layout).

    Batches: ``image`` (B, 3, H, W), ``depth`` (B, 1, H, W) float32 metres, +inf invalid.
    """

    target_key = "depth"
    layout = _NYU_LAYOUT

    def __init__(self, root: str, size: int | tuple[int, int] = (480, 640), batch_size: int = 8,
                 num_workers: int = 4, train_split: str = "train", val_split: str = "test", test_split: str = "test",
                 max_depth: float | None = 10.0, depth_scale: float = 1000.0, scale: tuple[int, int] | None = None,
                 ratio_range: tuple[float, float] | None = None, flip_prob: float = 0.5, photometric: bool = True,
                 eval_mode: str = "whole", eval_scale: tuple[int, int] | None = None,
                 val_batch_size: int | None = None, size_divisor: int = 16, normalize: bool = True,
                 seed: int = 0, photometric_on_device: bool = False) -> None:
        super().__init__(root, size, batch_size, num_workers, train_split, val_split, test_split, scale,
                         ratio_range, flip_prob, photometric, eval_mode, eval_scale, val_batch_size,
                         size_divisor, normalize, seed, photometric_on_device)
        self.save_hyperparameters()
        self.max_depth = max_depth
        self.depth_scale = depth_scale

    @property
    def num_classes(self) -> int:
        return 0

    def decoder(self) -> Callable[[Path], np.ndarray]:
        return functools.partial(decode_nyu_depth, depth_scale=self.depth_scale, max_depth=self.max_depth)

    def pairs(self, split: str) -> list[tuple[Path, Path]]:
        img_root = require_dir(self.root / "images", self.layout, "images folder")
        ann_root = require_dir(self.root / "annotations", self.layout, "annotations folder")
        if (img_root / split).is_dir():
            img_dir = img_root / split
            ann_dir = require_dir(ann_root / split, self.layout, f"annotation folder of split {split!r}")
            images = {p.stem: p for p in _files(img_dir, IMAGE_EXTENSIONS)}
            targets = {p.stem: p for p in _files(ann_dir, (".png",))}
            return _match(images, targets, img_dir, ann_dir, self.layout)
        list_file = self.root / f"{split}.txt"
        if list_file.is_file():
            return [self._listed(name, list_file, img_root, ann_root) for name in
                    (ln.strip() for ln in list_file.read_text().splitlines()) if name and not name.startswith("#")]
        if split == "all":
            images = {p.stem: p for p in _files(img_root, IMAGE_EXTENSIONS)}
            targets = {p.stem: p for p in _files(ann_root, (".png",))}
            return _match(images, targets, img_root, ann_root, self.layout)
        raise FileNotFoundError(f"{img_root / split}: split {split!r} not found (neither this folder nor the list "
                                f"file {list_file}); expected layout:\n{self.layout}")

    @staticmethod
    def _listed(name: str, list_file: Path, img_root: Path, ann_root: Path) -> tuple[Path, Path]:
        stem = name.rsplit(".", 1)[0] if name.lower().endswith(IMAGE_EXTENSIONS) else name
        candidates = [img_root / f"{stem}{ext}" for ext in IMAGE_EXTENSIONS]
        image = next((c for c in candidates if c.is_file()), None)
        if image is None:
            raise FileNotFoundError(f"{list_file}: lists {name!r} but no image {img_root / stem}"
                                    f"{{{','.join(IMAGE_EXTENSIONS)}}} exists")
        target = ann_root / f"{stem}.png"
        if not target.is_file():
            raise DatasetFormatError(f"{list_file}: lists {name!r}, whose image {image} has no depth map {target}")
        return image, target

