"""Source/target datasets for segmentation UDA: GTA5, SYNTHIA and Cityscapes in their own formats.

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
  crop 512x512, re-drawn up to 10 times (11 crops in all, the last kept unchecked) until no class covers more
  than ``cat_max_ratio`` = 0.75 of the labelled pixels (mmseg ``RandomCrop``; source only: the target is unlabelled at train time), flip 0.5,
  pad with label 255. No photometric distortion (it is commented out in DAFormer's configs).
* **Rare class sampling** (:class:`RareClassSampler`): per-image class pixel counts are computed once and
  cached as ``sample_class_stats.json`` next to the source data (each entry keyed on its label's size, mtime
  and hash, so a changed label is counted again); ``P(c) = softmax((1 - f_c) / T)``, T = 0.01; an image
  with more than ``min_pixels`` (3000) pixels of ``c`` is drawn, and its random crop is re-drawn up to 10
  times (11 crops in all, the last kept unchecked, as ``uda_dataset.py``) until it holds more than
  ``min_pixels * min_crop_ratio`` (0.5) pixels of ``c``.
  Reconstruction choice: classes without any image above ``min_pixels`` are left out (DAFormer asserts).
* Batches are ``{"source": {"image", "semantic"}, "target": {"image"}}`` at train time (target labels are
  never loaded) and labelled target batches at validation; images are ImageNet-normalised on the device.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from vitlab.core.data import (
    CITYSCAPES_CLASS_NAMES,
    CITYSCAPES_LABEL_TO_TRAIN_ID,
    IGNORE_INDEX,
    DatasetFormatError,
    DatasetLayout,
    DenseFilesDataset,
    FormatContract,
    check,
    crop_sample,
    declares,
    hflip_sample,
    pad_sample,
    read_image_tensor,
    read_label_png,
    register_dataset,
    require_dir,
    rescale_size,
    resize_sample,
)

__all__ = [
    "CLASS_NAMES",
    "GTA_TO_TRAIN_ID",
    "SOURCES",
    "SOURCE_SCALE",
    "SYNTHIA13_CLASSES",
    "SYNTHIA_CLASSES",
    "SYNTHIA_TO_TRAIN_ID",
    "RareClassSampler",
    "SourceTargetDataset",
    "UDATrainTransform",
    "class_stats",
    "decode_gta_label",
    "decode_synthia_label",
    "gta_pairs",
    "rcs_probabilities",
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


#: GTA5 ``labels/*.png``: palette indices that are Cityscapes label ids 0..33
GTA_LABELS = FormatContract("GTA5 label (8-bit/palette PNG of Cityscapes label ids)", bit_depth=(8,), channels=(1,),
                            value_range=(0, 33), ignore_index=IGNORE_INDEX)
#: SYNTHIA ``GT/LABELS/*.png``: 16-bit multi-channel, the class id (0 = void, 1..22) in the last OpenCV channel
SYNTHIA_LABELS = FormatContract("SYNTHIA label (16-bit multi-channel PNG, class id 0..22 in the last channel)",
                                bit_depth=(16,), layout="HWC", channels=(3, 4), value_channel=-1,
                                value_range=(0, 22))
_TRAIN_IDS = FormatContract("label (as Cityscapes train ids)", value_range=(0, len(CLASS_NAMES) - 1),
                            ignore_index=IGNORE_INDEX, warn_empty=True)


@declares(GTA_LABELS)
def decode_gta_label(path: Path) -> np.ndarray:
    """GTA5 ``labels/*.png`` (Cityscapes label ids) -> (H, W) int64 train ids, 255 elsewhere."""
    lab = _GTA_LUT[read_label_png(path, GTA_LABELS)]
    check(lab, _TRAIN_IDS, path)
    return lab


@declares(SYNTHIA_LABELS)
def decode_synthia_label(path: Path) -> np.ndarray:
    """SYNTHIA ``GT/LABELS/*.png`` (16-bit, class id in the last OpenCV channel) -> (H, W) int64 train ids."""
    import cv2

    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"{p}: SYNTHIA label not found")
    lab = cv2.imread(str(p), cv2.IMREAD_UNCHANGED)
    if lab is None:
        raise DatasetFormatError(f"{p}: cannot decode; expected a {SYNTHIA_LABELS.name}")
    check(lab, SYNTHIA_LABELS, p)
    train = _SYNTHIA_LUT[lab[:, :, -1]]
    check(train, _TRAIN_IDS, p)
    return train


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
    return _paired(require_dir(root / "images", _GTA_LAYOUT, "GTA5 images folder"),
                   require_dir(root / "labels", _GTA_LAYOUT, "GTA5 labels folder"), _GTA_LAYOUT)


def synthia_pairs(root: str | Path) -> list[tuple[Path, Path]]:
    """(image, label) paths of a SYNTHIA-RAND-CITYSCAPES root."""
    root = Path(root)
    return _paired(require_dir(root / "RGB", _SYNTHIA_LAYOUT, "SYNTHIA RGB folder"),
                   require_dir(root / "GT" / "LABELS", _SYNTHIA_LAYOUT, "SYNTHIA GT/LABELS folder"), _SYNTHIA_LAYOUT)


# --------------------------------------------------------------------------------------------------------------
# pipelines
# --------------------------------------------------------------------------------------------------------------


class UDATrainTransform:
    """DAFormer train pipeline on a sample dict: keep-ratio resize -> crop (cat_max_ratio) -> flip -> pad.

    Args:
        crop_size: (H, W) of the crop (512 in DAFormer).
        scale: (long, short) of the keep-ratio resize; None keeps the native size.
        cat_max_ratio: re-draw the crop (up to 10 re-draws after the first crop, mmseg ``RandomCrop``) while one class covers at least
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
        for _ in range(11 if (self.cat_max_ratio < 1.0 and "semantic" in sample) else 1):
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


_KEY_FIELDS = ("size", "mtime_ns", "sha1")


def _file_key(path: Path, sha1: str | None = None) -> dict[str, Any]:
    st = path.stat()
    return {"size": st.st_size, "mtime_ns": st.st_mtime_ns,
            "sha1": sha1 or hashlib.sha1(path.read_bytes()).hexdigest()}


def _unchanged(entry: dict[str, Any], path: Path) -> bool:
    """Same file as when ``entry`` was counted: same size and mtime, or (after a copy or checkout that
    changed only the mtime) same size and content hash."""
    st = path.stat()
    if entry.get("size") != st.st_size or "sha1" not in entry:
        return False
    return entry.get("mtime_ns") == st.st_mtime_ns or entry["sha1"] == hashlib.sha1(path.read_bytes()).hexdigest()


def class_stats(pairs: Sequence[tuple[Path, Path]], decode: Callable[[Path], np.ndarray], root: Path,
                num_classes: int = 19, cache: bool = True) -> list[dict[str, Any]]:
    """Per-image pixel counts of each train id, ``[{"file": rel_label_path, "<c>": n, ...}]``.

    Cached as ``root/sample_class_stats.json`` (DAFormer's file name), each entry keyed on its label file's
    size, mtime and SHA-1: a label that changed (or a cache entry without a key, such as DAFormer's) is
    counted again, the others are reused.
    """
    path = root / STATS_FILE
    rel = [os.path.relpath(lab, root) for _, lab in pairs]
    old: dict[str, dict[str, Any]] = {}
    if cache and path.is_file():
        try:
            entries = json.loads(path.read_text())
        except json.JSONDecodeError as err:
            raise DatasetFormatError(f"{path}: not valid JSON ({err}); delete it to recompute") from err
        if not isinstance(entries, list) or not all(isinstance(e, dict) and "file" in e for e in entries):
            raise DatasetFormatError(f"{path}: expected a list of {{'file': ..., '<class id>': pixels}} entries; "
                                     "delete it to recompute")
        old = {e["file"]: e for e in entries}
    stats, entries, stale = [], [], [name for name in old if name not in set(rel)]
    for (_, lab), name in zip(pairs, rel, strict=True):
        entry = old.get(name)
        if entry is None or not _unchanged(entry, Path(lab)):
            counts = np.bincount(decode(lab).ravel(), minlength=256)[:num_classes]
            entry = {"file": name, **_file_key(Path(lab)), **{str(c): int(n) for c, n in enumerate(counts) if n > 0}}
            stale.append(name)
        entries.append(entry)
        stats.append({k: v for k, v in entry.items() if k not in _KEY_FIELDS})
    if cache and (stale or list(old) != rel):
        try:
            path.write_text(json.dumps(entries))
        except OSError:  # a read-only dataset: use the stats without caching
            pass
    return stats


def rcs_probabilities(stats: Sequence[dict[str, Any]], temperature: float = 0.01
                      ) -> tuple[list[int], np.ndarray]:
    """Classes present in ``stats`` and ``P(c) = softmax((1 - f_c) / T)`` with ``f_c`` their pixel frequency."""
    totals: dict[int, int] = {}
    for s in stats:
        for k, n in s.items():
            if k.isdigit():
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
            for _ in range(10):  # re-crop until the crop keeps enough pixels of c (11 crops in all, as DAFormer)
                if (src["semantic"] == c).sum() > self.rcs.min_crop_pixels:
                    break
                src = self.source[i]
        else:
            src = self.source[index]
        path = self.target_images[rng.randrange(len(self.target_images))]
        img = read_image_tensor(path, uint8=False)
        return {"source": src, "target": self.target_transform({"image": img})}


# `vitlab data check gta5 <root>` / `synthia <root>` (Cityscapes, the target, is core's `cityscapes`)
register_dataset(DatasetLayout(
    "gta5", "GTA5 (Playing for Data)", {"all": 24_966},
    lambda root, split: DenseFilesDataset(gta_pairs(root), "semantic", decode_gta_label), ("images", "labels"),
    "the Playing for Data download page (Richter et al. 2016): 24,966 frames"))
register_dataset(DatasetLayout(
    "synthia", "SYNTHIA-RAND-CITYSCAPES", {"all": 9_400},
    lambda root, split: DenseFilesDataset(synthia_pairs(root), "semantic", decode_synthia_label),
    ("RGB", "GT/LABELS"), "the SYNTHIA download page (Ros et al. 2016): 9,400 frames", ("RAND_CITYSCAPES",)))
