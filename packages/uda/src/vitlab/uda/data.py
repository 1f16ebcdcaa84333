"""Source/target data for segmentation UDA: GTA5, SYNTHIA and Cityscapes in their own formats.

Everything here follows DAFormer (``lhoyer/DAFormer``: ``tools/convert_datasets/{gta,synthia}.py``,
``mmseg/datasets/uda_dataset.py``, ``configs/_base_/datasets/uda_*_to_cityscapes_512x512.py``):

* **GTA5** ``images/*.png`` + ``labels/*.png`` (palette PNG whose indices are Cityscapes label ids), mapped to
  the 19 train ids with :data:`GTA_TO_TRAIN_ID` (the Cityscapes map), everything else 255.
* **SYNTHIA-RAND-CITYSCAPES** ``RGB/*.png`` + ``GT/LABELS/*.png``: 16-bit multi-channel PNGs read with OpenCV
  ``IMREAD_UNCHANGED``; the *last* channel holds the SYNTHIA class id, mapped with :data:`SYNTHIA_TO_TRAIN_ID`
  (terrain, truck and train do not exist: 16 classes).
* **Cityscapes** (target) via core's :class:`~vitlab.core.data.CityscapesDataModule` file layout and decoder
  (``labelTrainIds`` or ``labelIds`` -> train ids).
* Train pipelines: keep-ratio resize (GTA (1280, 720), SYNTHIA (1280, 760), Cityscapes (1024, 512)), random
  crop 512x512 re-drawn up to 10 times until no class covers more than ``cat_max_ratio`` = 0.75 of the
  labelled pixels (mmseg ``RandomCrop``; source only: the target is unlabelled at train time), flip 0.5,
  pad with label 255. No photometric distortion (it is commented out in DAFormer's configs).
* **Rare class sampling** (:class:`RareClassSampler`): per-image class pixel counts are computed once and
  cached as ``sample_class_stats.json`` next to the source data; ``P(c) = softmax((1 - f_c) / T)``, T = 0.01;
  an image with more than ``min_pixels`` (3000) pixels of ``c`` is drawn, and its random crop is re-drawn up
  to 10 times until it holds more than ``min_pixels * min_crop_ratio`` (0.5) pixels of ``c``.
  Reconstruction choice: classes without any image above ``min_pixels`` are left out (DAFormer asserts).
* Batches are ``{"source": {"image", "semantic"}, "target": {"image"}}`` at train time (target labels are
  never loaded) and labelled target batches at validation; images are ImageNet-normalised on the device.
"""

from __future__ import annotations

import functools
import json
import os
import random
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from vitlab.core.data import CITYSCAPES_CLASS_NAMES, CITYSCAPES_LABEL_TO_TRAIN_ID, CityscapesDataModule
from vitlab.core.data.constants import IGNORE_INDEX, imagenet_normalize
from vitlab.core.data.dense import (
    DenseEvalTransform,
    DenseFilesDataset,
    crop_sample,
    dense_collate,
    hflip_sample,
    pad_sample,
    rescale_size,
    resize_sample,
)
from vitlab.core.data.io import DatasetFormatError, read_image, read_label_png

__all__ = [
    "CLASS_NAMES",
    "GTA_TO_TRAIN_ID",
    "SYNTHIA_TO_TRAIN_ID",
    "SYNTHIA_CLASSES",
    "SYNTHIA13_CLASSES",
    "RareClassSampler",
    "UDADataModule",
    "UDATrainTransform",
    "decode_gta_label",
    "decode_synthia_label",
    "gta_pairs",
    "synthia_pairs",
]

CLASS_NAMES = CITYSCAPES_CLASS_NAMES
#: GTA5 labels are Cityscapes label ids: the same map as Cityscapes labelIds -> trainIds.
GTA_TO_TRAIN_ID = dict(CITYSCAPES_LABEL_TO_TRAIN_ID)
#: SYNTHIA class id -> Cityscapes train id (DAFormer ``tools/convert_datasets/synthia.py``).
SYNTHIA_TO_TRAIN_ID = {3: 0, 4: 1, 2: 2, 21: 3, 5: 4, 7: 5, 15: 6, 9: 7, 6: 8, 1: 10, 10: 11, 17: 12, 8: 13,
                       19: 15, 12: 17, 11: 18}
#: the 16 train ids SYNTHIA annotates (no terrain 9, truck 14, train 16)
SYNTHIA_CLASSES = tuple(sorted(SYNTHIA_TO_TRAIN_ID.values()))
#: mIoU13: the 16 without wall, fence, pole
SYNTHIA13_CLASSES = tuple(c for c in SYNTHIA_CLASSES if c not in (3, 4, 5))

SOURCES = ("gta5", "synthia")
#: DAFormer's source resize (long, short) per dataset
SOURCE_SCALE = {"gta5": (1280, 720), "synthia": (1280, 760)}

_GTA_LAYOUT = """root/
  images/<id>.png      RGB
  labels/<id>.png      palette/8-bit PNG of Cityscapes label ids (0..33)"""
_SYNTHIA_LAYOUT = """root/                (SYNTHIA-RAND-CITYSCAPES)
  RGB/<id>.png         RGB
  GT/LABELS/<id>.png   16-bit multi-channel PNG, class id in the last channel (OpenCV order)"""


def _lut(mapping: dict[int, int], size: int) -> np.ndarray:
    lut = np.full(size, IGNORE_INDEX, dtype=np.int64)
    for k, v in mapping.items():
        lut[k] = v
    return lut


_GTA_LUT = _lut(GTA_TO_TRAIN_ID, 256)
_SYNTHIA_LUT = _lut(SYNTHIA_TO_TRAIN_ID, 65536)


def decode_gta_label(path: Path) -> np.ndarray:
    """GTA5 ``labels/*.png`` (Cityscapes label ids) -> (H, W) int64 train ids, 255 elsewhere."""
    lab = read_label_png(path)
    if lab.dtype != np.uint8:
        raise DatasetFormatError(f"{path}: 16-bit PNG; expected an 8-bit/palette GTA5 label map of Cityscapes ids")
    return _GTA_LUT[lab]


def decode_synthia_label(path: Path) -> np.ndarray:
    """SYNTHIA ``GT/LABELS/*.png`` (16-bit, class id in the last OpenCV channel) -> (H, W) int64 train ids."""
    import cv2

    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"{p}: SYNTHIA label not found")
    lab = cv2.imread(str(p), cv2.IMREAD_UNCHANGED)
    if lab is None:
        raise DatasetFormatError(f"{p}: cannot decode; expected a 16-bit multi-channel SYNTHIA label PNG")
    if lab.ndim != 3 or lab.dtype != np.uint16:
        raise DatasetFormatError(f"{p}: got a {lab.dtype} array of shape {lab.shape}; expected a 16-bit "
                                 "multi-channel PNG (SYNTHIA GT/LABELS) with the class id in the last channel")
    return _SYNTHIA_LUT[lab[:, :, -1]]


def _require(path: Path, layout: str, what: str) -> Path:
    if not path.is_dir():
        raise FileNotFoundError(f"{path}: {what} not found; expected layout:\n{layout}")
    return path


def _paired(img_dir: Path, gt_dir: Path, layout: str) -> list[tuple[Path, Path]]:
    images = {p.stem: p for p in img_dir.iterdir() if p.suffix.lower() == ".png"}
    labels = {p.stem: p for p in gt_dir.iterdir() if p.suffix.lower() == ".png"}
    if not images:
        raise DatasetFormatError(f"{img_dir}: no PNG images; expected layout:\n{layout}")
    missing = sorted(set(images) - set(labels))
    if missing:
        raise DatasetFormatError(f"{gt_dir}: no label for {len(missing)} image(s), e.g. {missing[:3]}; "
                                 f"expected layout:\n{layout}")
    return [(images[k], labels[k]) for k in sorted(images)]


def gta_pairs(root: str | Path) -> list[tuple[Path, Path]]:
    """(image, label) paths of a GTA5 root (all images are used as source)."""
    root = Path(root)
    return _paired(_require(root / "images", _GTA_LAYOUT, "GTA5 images folder"),
                   _require(root / "labels", _GTA_LAYOUT, "GTA5 labels folder"), _GTA_LAYOUT)


def synthia_pairs(root: str | Path) -> list[tuple[Path, Path]]:
    """(image, label) paths of a SYNTHIA-RAND-CITYSCAPES root."""
    root = Path(root)
    return _paired(_require(root / "RGB", _SYNTHIA_LAYOUT, "SYNTHIA RGB folder"),
                   _require(root / "GT" / "LABELS", _SYNTHIA_LAYOUT, "SYNTHIA GT/LABELS folder"), _SYNTHIA_LAYOUT)


# --------------------------------------------------------------------------------------------------------------
# pipelines
# --------------------------------------------------------------------------------------------------------------


class UDATrainTransform:
    """DAFormer train pipeline on a sample dict: keep-ratio resize -> crop (cat_max_ratio) -> flip -> pad.

    Args:
        crop_size: (H, W) of the crop (512 in DAFormer).
        scale: (long, short) of the keep-ratio resize; None keeps the native size.
        cat_max_ratio: re-draw the crop (up to 10 tries, mmseg ``RandomCrop``) while one class covers at least
            this fraction of the labelled pixels; 1.0 disables it. Needs a ``semantic`` key.
        flip_prob: horizontal flip probability.
    """

    def __init__(self, crop_size: int | Sequence[int] = 512, scale: Sequence[int] | None = None,
                 cat_max_ratio: float = 0.75, flip_prob: float = 0.5) -> None:
        self.crop_size = (crop_size, crop_size) if isinstance(crop_size, int) else tuple(int(c) for c in crop_size)
        self.scale = None if scale is None else tuple(int(s) for s in scale)
        self.cat_max_ratio = float(cat_max_ratio)
        self.flip_prob = float(flip_prob)

    def __call__(self, sample: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        h, w = sample["image"].shape[-2:]
        if self.scale is not None:
            sample = resize_sample(sample, rescale_size(h, w, self.scale))
            h, w = sample["image"].shape[-2:]
        ch, cw = min(h, self.crop_size[0]), min(w, self.crop_size[1])
        crop = None
        for _ in range(10 if (self.cat_max_ratio < 1.0 and "semantic" in sample) else 1):
            top, left = random.randint(0, h - ch), random.randint(0, w - cw)
            crop = crop_sample(sample, top, left, ch, cw)
            if "semantic" not in crop or self.cat_max_ratio >= 1.0:
                break
            lab = crop["semantic"]
            counts = torch.bincount(lab[lab != IGNORE_INDEX].flatten(), minlength=1)
            counts = counts[counts > 0]
            if len(counts) > 1 and counts.max() / counts.sum() < self.cat_max_ratio:
                break
        if random.random() < self.flip_prob:
            crop = hflip_sample(crop)
        return pad_sample(crop, self.crop_size)


# --------------------------------------------------------------------------------------------------------------
# rare class sampling
# --------------------------------------------------------------------------------------------------------------

STATS_FILE = "sample_class_stats.json"


def class_stats(pairs: Sequence[tuple[Path, Path]], decode: Callable[[Path], np.ndarray], root: Path,
                num_classes: int = 19, cache: bool = True) -> list[dict[str, Any]]:
    """Per-image pixel counts of each train id, ``[{"file": rel_label_path, "<c>": n, ...}]``.

    Computed once and cached as ``root/sample_class_stats.json`` (DAFormer writes the same file in its
    conversion scripts); a cache listing other files than ``pairs`` is recomputed.
    """
    path = root / STATS_FILE
    rel = [os.path.relpath(lab, root) for _, lab in pairs]
    if cache and path.is_file():
        try:
            stats = json.loads(path.read_text())
        except json.JSONDecodeError as err:
            raise DatasetFormatError(f"{path}: not valid JSON ({err}); delete it to recompute") from err
        if [s.get("file") for s in stats] == rel:
            return stats
    stats = []
    for (_, lab), name in zip(pairs, rel, strict=True):
        counts = np.bincount(decode(lab).ravel(), minlength=256)[:num_classes]
        stats.append({"file": name, **{str(c): int(n) for c, n in enumerate(counts) if n > 0}})
    if cache:
        try:
            path.write_text(json.dumps(stats))
        except OSError:  # a read-only dataset: use the stats without caching
            pass
    return stats


def rcs_probabilities(stats: Sequence[dict[str, Any]], temperature: float = 0.01
                      ) -> tuple[list[int], np.ndarray]:
    """Classes present in ``stats`` and ``P(c) = softmax((1 - f_c) / T)`` with ``f_c`` their pixel frequency."""
    totals: dict[int, int] = {}
    for s in stats:
        for k, n in s.items():
            if k != "file":
                totals[int(k)] = totals.get(int(k), 0) + int(n)
    classes = sorted(totals)
    freq = np.array([totals[c] for c in classes], dtype=np.float64)
    freq /= freq.sum()
    logits = (1.0 - freq) / temperature
    p = np.exp(logits - logits.max())
    return classes, p / p.sum()


class RareClassSampler:
    """DAFormer's rare class sampling over a labelled source set (see the module docstring)."""

    def __init__(self, stats: Sequence[dict[str, Any]], temperature: float = 0.01, min_pixels: int = 3000,
                 min_crop_ratio: float = 0.5) -> None:
        classes, probs = rcs_probabilities(stats, temperature)
        self.samples_with_class = {c: [i for i, s in enumerate(stats) if int(s.get(str(c), 0)) > min_pixels]
                                   for c in classes}
        keep = [k for k, c in enumerate(classes) if self.samples_with_class[c]]
        if not keep:
            raise ValueError(f"RareClassSampler: no image has more than min_pixels={min_pixels} pixels of any class")
        self.classes = [classes[k] for k in keep]
        self.probs = probs[keep] / probs[keep].sum()
        self.min_crop_pixels = min_pixels * min_crop_ratio

    def sample(self, rng: random.Random) -> tuple[int, int]:
        """(class, source index)."""
        c = rng.choices(self.classes, weights=self.probs.tolist())[0]
        return c, rng.choice(self.samples_with_class[c])


class SourceTargetDataset(Dataset):
    """Item ``i``: ``{"source": sample, "target": {"image"}}``; source by RCS (if given) or ``i``, target uniform."""

    def __init__(self, source: DenseFilesDataset, target_images: Sequence[Path], target_transform: UDATrainTransform,
                 rcs: RareClassSampler | None = None) -> None:
        self.source = source
        self.target_images = list(target_images)
        self.target_transform = target_transform
        self.rcs = rcs

    def __len__(self) -> int:
        return len(self.source)

    def __getitem__(self, index: int) -> dict[str, dict[str, torch.Tensor]]:
        rng = random  # the per-worker stream Lightning seeds (seed_everything(workers=True))
        if self.rcs is not None:
            c, i = self.rcs.sample(rng)
            src = self.source[i]
            for _ in range(9):  # re-crop until the crop keeps enough pixels of c (10 tries in all)
                if (src["semantic"] == c).sum() > self.rcs.min_crop_pixels:
                    break
                src = self.source[i]
        else:
            src = self.source[index]
        path = self.target_images[rng.randrange(len(self.target_images))]
        img = torch.from_numpy(read_image(path)).permute(2, 0, 1).float().div_(255.0)
        return {"source": src, "target": self.target_transform({"image": img})}


class UDADataModule(pl.LightningDataModule):
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
        super().__init__()
        if source not in SOURCES:
            raise ValueError(f"UDADataModule: source must be one of {SOURCES}, got {source!r}")
        self.save_hyperparameters()
        self.source = source
        self.source_root = Path(source_root)
        self.batch_size, self.val_batch_size, self.num_workers = batch_size, val_batch_size, num_workers
        self.normalize = normalize
        self.seed = seed
        self.source_transform = UDATrainTransform(crop_size, source_scale or SOURCE_SCALE[source], cat_max_ratio,
                                                  flip_prob)
        self.target_transform = UDATrainTransform(crop_size, target_scale, 1.0, flip_prob)
        self.cityscapes = CityscapesDataModule(target_root, size=self.source_transform.crop_size, label_type=label_type,
                                               val_split=val_split, test_split=val_split, eval_scale=target_scale,
                                               val_batch_size=val_batch_size, num_workers=num_workers)
        self.cityscapes.eval_transform = DenseEvalTransform("whole", scale=target_scale)
        self.target_train_split = target_train_split
        self.rcs_args = (rcs_temperature, rcs_min_pixels, rcs_min_crop_ratio) if rcs else None
        self.train_set: SourceTargetDataset | None = None
        self.val_set: DenseFilesDataset | None = None

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

    def setup(self, stage: str | None = None) -> None:
        if stage in (None, "fit") and self.train_set is None:
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
            self.train_set = SourceTargetDataset(source, targets, self.target_transform, rcs)
        if stage in (None, "fit", "validate", "test") and self.val_set is None:
            self.val_set = self.cityscapes.dataset(self.cityscapes.splits["validate"])

    def train_dataloader(self) -> DataLoader:
        from vitlab.core.data import EpochShuffleSampler

        if self.train_set is None:
            raise RuntimeError("call setup('fit') before asking for the train loader")
        return DataLoader(self.train_set, batch_size=self.batch_size, drop_last=True, num_workers=self.num_workers,
                          sampler=EpochShuffleSampler(len(self.train_set), seed=self.seed),
                          persistent_workers=self.num_workers > 0, pin_memory=torch.cuda.is_available())

    def val_dataloader(self) -> DataLoader:
        if self.val_set is None:
            raise RuntimeError("call setup('validate') before asking for the val loader")
        return DataLoader(self.val_set, batch_size=self.val_batch_size, num_workers=self.num_workers,
                          collate_fn=functools.partial(dense_collate, size_divisor=32),
                          persistent_workers=self.num_workers > 0)

    def test_dataloader(self) -> DataLoader:
        return self.val_dataloader()

    def on_after_batch_transfer(self, batch: Any, dataloader_idx: int) -> Any:
        return imagenet_normalize(batch, keys=("image",)) if self.normalize else batch
