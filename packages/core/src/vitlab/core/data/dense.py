"""Real dense-prediction datasets (ADE20K, Cityscapes, NYU Depth v2) and their paired geometric transforms.

Samples are dicts of tensors: ``image`` (3, H, W) float in [0, 1] (ImageNet-normalised on the device in
``on_after_batch_transfer``, as :class:`~vitlab.core.data.synthetic.SyntheticScenesDataModule` does),
plus ``semantic`` (H, W) int64 with 255 = ignore, or ``depth`` (1, H, W) float metres with +inf = invalid.

The train pipeline follows mmsegmentation's recipe (RandomResize with a ratio range -> RandomCrop ->
RandomFlip -> PhotoMetricDistortion -> pad); every geometric step moves the image and its dense targets
together. Targets are always resized with nearest-neighbour sampling, so a resized label or depth map only
holds values of the original one (invalid depth is never blended into valid depth). With
``photometric_on_device`` the workers skip the photometric step and the DataModule applies the same law to
whole training batches on the device (:class:`~vitlab.core.data.BatchPhotometricDistortion`).
"""

from __future__ import annotations

import functools
import math
import random
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor
from torch.utils.data import DataLoader, Dataset, default_collate
from torchvision.transforms.v2 import functional as TF

from vitlab.core.data.constants import IGNORE_INDEX, IMAGENET_MEAN, imagenet_normalize
from vitlab.core.data.gpu_augment import BatchPhotometricDistortion
from vitlab.core.data.io import DatasetFormatError, open_image, read_depth_png, read_image, read_label_png
from vitlab.core.data.loader import make_loader
from vitlab.core.data.sampling import EpochShuffleSampler, ResumableDataMixin

__all__ = [
    "ADE20KDataModule",
    "CITYSCAPES_CLASS_NAMES",
    "CITYSCAPES_LABEL_TO_TRAIN_ID",
    "CityscapesDataModule",
    "DenseDataModule",
    "DenseEvalTransform",
    "DenseFilesDataset",
    "DenseTrainTransform",
    "NYUDepthDataModule",
    "PhotometricDistortion",
    "VALID_KEY",
    "crop_sample",
    "dense_collate",
    "hflip_sample",
    "pad_sample",
    "read_ade20k_full_seg",
    "rescale_size",
    "resize_sample",
]

Sample = dict[str, Tensor]
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png")
#: bool (H, W) map of real (not padded) pixels that a train transform adds when the photometric step runs later
VALID_KEY = "valid"

# --------------------------------------------------------------------------------------------------------------
# paired transforms on sample dicts
# --------------------------------------------------------------------------------------------------------------


def _pad_value(t: Tensor) -> float:
    """Fill for non-image pixels added by padding: 255 for integer label maps, +inf for continuous targets,
    False for bool maps (the :data:`VALID_KEY` map)."""
    if t.dtype == torch.bool:
        return 0.0
    return float(IGNORE_INDEX) if not t.is_floating_point() else math.inf


def rescale_size(height: int, width: int, scale: Sequence[int], ratio: float = 1.0) -> tuple[int, int]:
    """Keep-ratio target size fitting ``(height, width)`` into ``scale * ratio`` (mmseg/mmcv ``rescale``).

    ``scale`` is (long edge, short edge), e.g. (2048, 512) for ADE20K: the image is scaled by
    ``min(long / max(h, w), short / min(h, w))``, so usually its short side becomes ``short * ratio``.
    """
    long_edge, short_edge = max(scale) * ratio, min(scale) * ratio
    f = min(long_edge / max(height, width), short_edge / min(height, width))
    return max(1, int(height * f + 0.5)), max(1, int(width * f + 0.5))


def resize_sample(sample: Sample, size: Sequence[int]) -> Sample:
    """Resize every map to ``size`` = (H, W): image bilinear (antialiased), targets nearest."""
    h, w = int(size[0]), int(size[1])
    out = {}
    for key, t in sample.items():
        if t.shape[-2:] == (h, w):
            out[key] = t
        elif key == "image":
            out[key] = F.interpolate(t[None], size=(h, w), mode="bilinear", align_corners=False,
                                     antialias=True)[0].clamp_(0.0, 1.0)
        else:  # "nearest-exact" samples pixel centres (PIL/OpenCV nearest), unlike torch's legacy "nearest"
            x = t.reshape(1, -1, *t.shape[-2:])
            y = F.interpolate(x if x.is_floating_point() else x.double(), size=(h, w), mode="nearest-exact")
            out[key] = y.to(t.dtype).reshape(*t.shape[:-2], h, w)
    return out


def crop_sample(sample: Sample, top: int, left: int, height: int, width: int) -> Sample:
    """The same window of every map."""
    return {k: t[..., top : top + height, left : left + width] for k, t in sample.items()}


def hflip_sample(sample: Sample) -> Sample:
    """Mirror every map left-right."""
    return {k: t.flip(-1) for k, t in sample.items()}


def pad_sample(sample: Sample, size: Sequence[int], image_pad: Sequence[float] = IMAGENET_MEAN) -> Sample:
    """Pad bottom/right to ``size`` = (H, W): image with ``image_pad`` per channel, labels 255, depth +inf,
    bool maps False.

    The default image fill is the ImageNet mean, i.e. exactly 0 after normalisation (mmseg pads normalised
    images with 0); padded pixels never carry ground truth.
    """
    h, w = int(size[0]), int(size[1])
    out = {}
    for key, t in sample.items():
        th, tw = t.shape[-2:]
        if th > h or tw > w:
            raise ValueError(f"pad_sample: {key!r} is {th}x{tw}, larger than the pad size {h}x{w}")
        if (th, tw) == (h, w):
            out[key] = t
            continue
        if key == "image":
            fill = torch.as_tensor(image_pad, dtype=t.dtype).view(-1, 1, 1)
            p = fill.expand(t.shape[0], h, w).clone()
        else:
            p = torch.full((*t.shape[:-2], h, w), _pad_value(t), dtype=t.dtype)
        p[..., :th, :tw] = t
        out[key] = p
    return out


def _size_of(sample: Sample) -> tuple[int, int]:
    h, w = sample["image"].shape[-2:]
    return int(h), int(w)


def _pair(size: int | Sequence[int], name: str) -> tuple[int, int]:
    s = (size, size) if isinstance(size, int) else tuple(int(v) for v in size)
    if len(s) != 2 or min(s) < 1:
        raise ValueError(f"{name} must be an int or (height, width) of positive ints, got {size!r}")
    return s  # type: ignore[return-value]


class PhotometricDistortion:
    """mmseg ``PhotoMetricDistortion`` on a [0, 1] image: each step with probability 1/2.

    Brightness: additive ``U(-32, 32) / 255``; contrast: multiplicative ``U(0.5, 1.5)`` (before or after the
    colour steps, chosen at random); saturation ``U(0.5, 1.5)``; hue shift ``U(-18, 18)`` degrees of
    OpenCV's 180-step hue, i.e. +-0.1 of the hue circle. The ranges follow mmseg; the saturation/hue
    operators are torchvision's (a grey blend and an HSV rotation), a close reconstruction of mmseg's HSV
    arithmetic. Image only: targets are never touched.
    """

    def __init__(self, brightness_delta: float = 32 / 255, contrast_range: Sequence[float] = (0.5, 1.5),
                 saturation_range: Sequence[float] = (0.5, 1.5), hue_delta: float = 0.1) -> None:
        self.brightness_delta = brightness_delta
        self.contrast_range = tuple(contrast_range)
        self.saturation_range = tuple(saturation_range)
        self.hue_delta = hue_delta

    def __call__(self, image: Tensor) -> Tensor:
        def coin() -> bool:
            return random.random() < 0.5

        def contrast(x: Tensor) -> Tensor:
            return (x * random.uniform(*self.contrast_range)).clamp(0, 1) if coin() else x

        x = image
        if coin():
            x = (x + random.uniform(-self.brightness_delta, self.brightness_delta)).clamp(0, 1)
        contrast_first = coin()
        if contrast_first:
            x = contrast(x)
        if coin():
            x = TF.adjust_saturation(x, random.uniform(*self.saturation_range)).clamp(0, 1)
        if coin():
            x = TF.adjust_hue(x, random.uniform(-self.hue_delta, self.hue_delta))
        if not contrast_first:
            x = contrast(x)
        return x


class DenseTrainTransform:
    """Random keep-ratio resize -> random crop -> horizontal flip -> photometric jitter -> pad to the crop.

    Args:
        crop_size: (H, W) of every output sample (int = square).
        scale: (long, short) edges of the keep-ratio base resize (mmseg ``RandomResize`` scale, e.g.
            (2048, 512) ADE20K, (2048, 1024) Cityscapes); ``None`` keeps the native resolution.
        ratio_range: the base size is multiplied by ``U(lo, hi)`` (``(0.5, 2.0)`` in mmseg); ``None`` = 1.
            With ``scale=None`` the ratio multiplies the native size.
        flip_prob: probability of a horizontal flip.
        photometric: apply :class:`PhotometricDistortion` to the image.
        image_pad: image fill of padded pixels (ImageNet mean = 0 after normalisation).
        valid_mask: add a bool :data:`VALID_KEY` map, False on padding, so that a photometric step run later
            on the padded batch (``photometric_on_device``) can leave padded pixels as they are.

    Crops of an image smaller than ``crop_size`` take the whole side and are padded (label 255, depth
    +inf), as mmseg's RandomCrop + Pad. mmseg's ``cat_max_ratio`` re-cropping is not implemented.
    """

    def __init__(self, crop_size: int | Sequence[int], scale: Sequence[int] | None = None,
                 ratio_range: Sequence[float] | None = (0.5, 2.0), flip_prob: float = 0.5,
                 photometric: bool = True, image_pad: Sequence[float] = IMAGENET_MEAN,
                 valid_mask: bool = False) -> None:
        self.crop_size = _pair(crop_size, "crop_size")
        self.scale = None if scale is None else _pair(scale, "scale")
        if ratio_range is not None and not (0 < ratio_range[0] <= ratio_range[1]):
            raise ValueError(f"ratio_range must be (lo, hi) with 0 < lo <= hi, got {ratio_range!r}")
        self.ratio_range = None if ratio_range is None else (float(ratio_range[0]), float(ratio_range[1]))
        self.flip_prob = float(flip_prob)
        self.photometric = PhotometricDistortion() if photometric else None
        self.image_pad = tuple(image_pad)
        self.valid_mask = bool(valid_mask)

    def __call__(self, sample: Sample) -> Sample:
        h, w = _size_of(sample)
        ratio = 1.0 if self.ratio_range is None else random.uniform(*self.ratio_range)
        if self.scale is not None:
            sample = resize_sample(sample, rescale_size(h, w, self.scale, ratio))
        elif ratio != 1.0:
            sample = resize_sample(sample, (max(1, int(h * ratio + 0.5)), max(1, int(w * ratio + 0.5))))
        h, w = _size_of(sample)
        ch, cw = min(h, self.crop_size[0]), min(w, self.crop_size[1])
        top, left = random.randint(0, h - ch), random.randint(0, w - cw)
        sample = crop_sample(sample, top, left, ch, cw)
        if random.random() < self.flip_prob:
            sample = hflip_sample(sample)
        if self.photometric is not None:
            sample = {**sample, "image": self.photometric(sample["image"])}
        if self.valid_mask:
            sample = {**sample, VALID_KEY: torch.ones(_size_of(sample), dtype=torch.bool)}
        return pad_sample(sample, self.crop_size, self.image_pad)


EVAL_MODES = ("whole", "resize_pad")


class DenseEvalTransform:
    """Deterministic evaluation resize.

    ``mode="whole"``: keep-ratio resize to ``scale`` (long, short) when given (mmseg test ``Resize``, e.g.
    short side 512 for ADE20K), otherwise the native image; :func:`dense_collate` then pads each batch to
    its largest sample, rounded up to ``size_divisor``. ``mode="resize_pad"``: keep-ratio resize so the
    image fits in ``size`` (H, W), then pad to exactly ``size``. Metrics are computed at this resolution;
    padded pixels carry no ground truth.
    """

    def __init__(self, mode: str = "whole", size: int | Sequence[int] | None = None,
                 scale: Sequence[int] | None = None, image_pad: Sequence[float] = IMAGENET_MEAN) -> None:
        if mode not in EVAL_MODES:
            raise ValueError(f"eval mode must be one of {EVAL_MODES}, got {mode!r}")
        if mode == "resize_pad" and size is None:
            raise ValueError("eval mode 'resize_pad' needs a size (H, W)")
        self.mode = mode
        self.size = None if size is None else _pair(size, "size")
        self.scale = None if scale is None else _pair(scale, "scale")
        self.image_pad = tuple(image_pad)

    def __call__(self, sample: Sample) -> Sample:
        h, w = _size_of(sample)
        if self.mode == "whole":
            return sample if self.scale is None else resize_sample(sample, rescale_size(h, w, self.scale))
        th, tw = self.size  # type: ignore[misc]
        f = min(th / h, tw / w)
        sample = resize_sample(sample, (min(th, max(1, int(h * f + 0.5))), min(tw, max(1, int(w * f + 0.5)))))
        return pad_sample(sample, (th, tw), self.image_pad)


def dense_collate(samples: list[Sample], size_divisor: int = 1,
                  image_pad: Sequence[float] = IMAGENET_MEAN) -> dict[str, Any]:
    """Stack samples of different sizes: pad each to the batch maximum rounded up to ``size_divisor``."""
    h = max(s["image"].shape[-2] for s in samples)
    w = max(s["image"].shape[-1] for s in samples)
    h, w = math.ceil(h / size_divisor) * size_divisor, math.ceil(w / size_divisor) * size_divisor
    return default_collate([pad_sample(s, (h, w), image_pad) for s in samples])


# --------------------------------------------------------------------------------------------------------------
# file readers / target decoders
# --------------------------------------------------------------------------------------------------------------


def read_ade20k_full_seg(path: str | Path) -> tuple[np.ndarray, np.ndarray]:
    """Decode a full-release ADE20K ``*_seg.png`` (or ``*_parts_N.png``): ``(class_map, instance_map)`` int64.

    The RGB coding of the ADE20K toolkit: ``class = R // 10 * 256 + G`` (an index into the full ADE20K
    object list, 0 = unlabelled; it equals ``name_ndx`` of the objects in the image's ``.json``), and the
    instances are the distinct ``B`` values, numbered 1..K by increasing ``B`` (0 = ``B == 0``, no
    instance). These are *not* the 150 SceneParsing classes of ADEChallengeData2016.
    """
    what = "an RGB ADE20K segmentation PNG (class = R // 10 * 256 + G, instance from B)"
    p = Path(path)
    im = open_image(p, what)
    if im.mode != "RGB":
        raise DatasetFormatError(f"{p}: image mode {im.mode!r}; expected {what}")
    rgb = np.asarray(im)
    r, g, b = (rgb[..., i].astype(np.int64) for i in range(3))
    class_map = r // 10 * 256 + g
    _, inverse = np.unique(b, return_inverse=True)
    instance_map = inverse.reshape(b.shape).astype(np.int64)
    if b.min() > 0:
        instance_map += 1
    return class_map, instance_map


def decode_ade20k_label(path: Path, reduce_zero_label: bool = True, num_classes: int = 150) -> np.ndarray:
    """ADEChallengeData2016 annotation -> (H, W) int64: 0 ("other") -> 255, 1..150 -> 0..149 (mmseg
    ``reduce_zero_label``). Values above ``num_classes`` are a format error."""
    lab = read_label_png(path).astype(np.int64)
    top = num_classes if reduce_zero_label else num_classes - 1
    bad = (lab > top) & (lab != IGNORE_INDEX)
    if bad.any():
        raise DatasetFormatError(
            f"{path}: label values {np.unique(lab[bad])[:10].tolist()} outside 0..{top}; expected an "
            "ADEChallengeData2016 annotation (uint8, 0 = other, 1..150 = classes)"
        )
    if reduce_zero_label:
        lab = np.where(lab == 0, IGNORE_INDEX, lab - 1)
    return lab


#: Cityscapes labelId -> trainId (cityscapesscripts ``labels.py``); every other id -> 255.
CITYSCAPES_LABEL_TO_TRAIN_ID = {7: 0, 8: 1, 11: 2, 12: 3, 13: 4, 17: 5, 19: 6, 20: 7, 21: 8, 22: 9, 23: 10,
                                24: 11, 25: 12, 26: 13, 27: 14, 28: 15, 31: 16, 32: 17, 33: 18}
CITYSCAPES_CLASS_NAMES = ("road", "sidewalk", "building", "wall", "fence", "pole", "traffic light",
                          "traffic sign", "vegetation", "terrain", "sky", "person", "rider", "car", "truck",
                          "bus", "train", "motorcycle", "bicycle")
_CS_LUT = np.full(256, IGNORE_INDEX, dtype=np.int64)
for _k, _v in CITYSCAPES_LABEL_TO_TRAIN_ID.items():
    _CS_LUT[_k] = _v


def decode_cityscapes_label(path: Path, label_type: str = "labelTrainIds") -> np.ndarray:
    """``*_gtFine_labelTrainIds.png`` (0..18, 255) as is, or ``*_gtFine_labelIds.png`` mapped to train ids."""
    lab = read_label_png(path)
    if lab.dtype != np.uint8:
        raise DatasetFormatError(f"{path}: 16-bit PNG; expected an 8-bit Cityscapes {label_type} map")
    if label_type == "labelIds":
        return _CS_LUT[lab]
    lab = lab.astype(np.int64)
    bad = (lab >= len(CITYSCAPES_CLASS_NAMES)) & (lab != IGNORE_INDEX)
    if bad.any():
        raise DatasetFormatError(
            f"{path}: values {np.unique(lab[bad])[:10].tolist()} are not train ids; expected 0..18 or 255 "
            "(use label_type='labelIds' for *_gtFine_labelIds.png)"
        )
    return lab


def decode_nyu_depth(path: Path, depth_scale: float = 1000.0, max_depth: float | None = 10.0) -> np.ndarray:
    """uint16 depth PNG -> (1, H, W) float32 metres (``v / depth_scale``); 0 and depths > ``max_depth`` -> +inf."""
    d = read_depth_png(path, scale=depth_scale)
    if max_depth is not None:
        d[d > max_depth] = np.inf
    return d[None]


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
        image = read_image(image_path)
        target = self.decode(target_path)
        if tuple(target.shape[-2:]) != image.shape[:2]:
            raise DatasetFormatError(
                f"{target_path}: ground truth is {target.shape[-2]}x{target.shape[-1]} but its image "
                f"{image_path} is {image.shape[0]}x{image.shape[1]}; they must have the same size"
            )
        return {"image": torch.from_numpy(image).permute(2, 0, 1).float().div_(255.0),
                self.target_key: torch.from_numpy(np.ascontiguousarray(target))}

    def __getitem__(self, index: int) -> Sample:
        sample = self.load(index)
        return self.transform(sample) if self.transform is not None else sample


def _require_dir(path: Path, layout: str, what: str) -> Path:
    if not path.exists():
        raise FileNotFoundError(f"{path}: {what} not found; expected layout:\n{layout}")
    if not path.is_dir():
        raise DatasetFormatError(f"{path}: {what} is not a directory; expected layout:\n{layout}")
    return path


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


# --------------------------------------------------------------------------------------------------------------
# DataModules
# --------------------------------------------------------------------------------------------------------------


class DenseDataModule(ResumableDataMixin, pl.LightningDataModule):
    """Shared machinery: train/val/test datasets of (image, target) files, loaders, device normalisation.

    Subclasses implement :meth:`pairs` (split -> file pairs) and :meth:`decoder`. The train loader
    shuffles with :class:`EpochShuffleSampler` (order depends only on seed and epoch) and drops the last
    incomplete batch; val/test are in file order. Images are ImageNet-normalised in
    ``on_after_batch_transfer`` when ``normalize=True`` (as ``SyntheticScenesDataModule``).

    ``photometric_on_device=True`` (with ``photometric``; the GPU recipes) takes the per-pixel photometric
    jitter out of the CPU workers: it runs once per training batch in ``on_after_batch_transfer``, before
    normalisation (:class:`~vitlab.core.data.BatchPhotometricDistortion`, the same mmseg law per image, no
    host sync). Padded pixels keep the pad value, as on the CPU path. Val/test/predict batches are not jittered.
    """

    target_key = "semantic"
    layout = ""

    def __init__(self, root: str, size: int | tuple[int, int], batch_size: int, num_workers: int,
                 train_split: str, val_split: str, test_split: str, scale: tuple[int, int] | None,
                 ratio_range: tuple[float, float] | None, flip_prob: float, photometric: bool, eval_mode: str,
                 eval_scale: tuple[int, int] | None, val_batch_size: int | None, size_divisor: int,
                 normalize: bool, seed: int, photometric_on_device: bool = False) -> None:
        super().__init__()
        if batch_size < 1 or num_workers < 0 or size_divisor < 1:
            raise ValueError(f"need batch_size >= 1, num_workers >= 0, size_divisor >= 1; got {batch_size}, "
                             f"{num_workers}, {size_divisor}")
        self.root = Path(root)
        self.size = _pair(size, "size")
        self.batch_size = batch_size
        self.val_batch_size = val_batch_size or batch_size
        self.num_workers = num_workers
        self.splits = {"fit": train_split, "validate": val_split, "test": test_split}
        self.size_divisor = size_divisor
        self.normalize = bool(normalize)
        self.seed = seed
        self.photometric_on_device = bool(photometric_on_device) and bool(photometric)
        self.photometric_augment = BatchPhotometricDistortion() if self.photometric_on_device else None
        self.train_transform = DenseTrainTransform(self.size, scale, ratio_range, flip_prob,
                                                   photometric and not self.photometric_on_device,
                                                   valid_mask=self.photometric_on_device)
        self.eval_transform = DenseEvalTransform(eval_mode, self.size, eval_scale)
        self.train_set: DenseFilesDataset | None = None
        self.val_set: DenseFilesDataset | None = None
        self.test_set: DenseFilesDataset | None = None

    @property
    def num_classes(self) -> int:
        raise NotImplementedError

    def pairs(self, split: str) -> list[tuple[Path, Path]]:
        raise NotImplementedError

    def decoder(self) -> Callable[[Path], np.ndarray]:
        raise NotImplementedError

    def _check_root(self) -> None:
        _require_dir(self.root, self.layout, "dataset root")

    def dataset(self, split: str, train: bool = False) -> DenseFilesDataset:
        """The dataset of ``split`` with the train or eval transform."""
        self._check_root()
        transform = self.train_transform if train else self.eval_transform
        return DenseFilesDataset(self.pairs(split), self.target_key, self.decoder(), transform)

    def setup(self, stage: str | None = None) -> None:
        if stage in (None, "fit") and self.train_set is None:
            self.train_set = self.dataset(self.splits["fit"], train=True)
            if len(self.train_set) < self.batch_size:
                raise ValueError(f"{type(self).__name__}: split {self.splits['fit']!r} has {len(self.train_set)} "
                                 f"samples, fewer than batch_size={self.batch_size} (the train loader drops "
                                 "incomplete batches)")
        if stage in (None, "fit", "validate") and self.val_set is None:
            self.val_set = self.dataset(self.splits["validate"])
        if stage in (None, "test", "predict") and self.test_set is None:
            self.test_set = self.dataset(self.splits["test"])

    def _loader(self, dataset: DenseFilesDataset | None, train: bool) -> DataLoader:
        if dataset is None:
            raise RuntimeError("call `setup()` with the matching stage before asking for a dataloader")
        return make_loader(
            dataset,
            batch_size=self.batch_size if train else self.val_batch_size,
            train=train,
            sampler=EpochShuffleSampler(len(dataset), seed=self.seed) if train else None,
            num_workers=self.num_workers,
            seed=self.seed,
            # train crops already share one size; eval batches are padded to a multiple of size_divisor
            collate_fn=functools.partial(dense_collate, size_divisor=1 if train else self.size_divisor),
        )

    def train_dataloader(self) -> DataLoader:
        return self.resumable(self._loader(self.train_set, train=True))

    def val_dataloader(self) -> DataLoader:
        return self._loader(self.val_set, train=False)

    def test_dataloader(self) -> DataLoader:
        return self._loader(self.test_set, train=False)

    def predict_dataloader(self) -> DataLoader:
        """Predictions run on the test split (with its eval transform)."""
        return self._loader(self.test_set, train=False)

    def normalize_batch(self, batch: Any) -> Any:
        """ImageNet-normalise ``batch["image"]`` on its device."""
        return imagenet_normalize(batch, keys=("image",))

    def on_after_batch_transfer(self, batch: Any, dataloader_idx: int) -> Any:
        batch = dict(batch)
        valid = batch.pop(VALID_KEY, None)  # only for the device jitter; the model never sees it
        trainer = getattr(self, "trainer", None)
        if self.photometric_augment is not None and trainer is not None and trainer.training:
            batch = self.photometric_augment(batch, valid)  # training batches only, in [0, 1]
        return self.normalize_batch(batch) if self.normalize else batch


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
        img_dir = _require_dir(self.root / "images" / split, self.layout, f"image folder of split {split!r}")
        ann_dir = _require_dir(self.root / "annotations" / split, self.layout,
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
        img_dir = _require_dir(self.root / "leftImg8bit" / split, self.layout, f"image folder of split {split!r}")
        gt_dir = _require_dir(self.root / "gtFine" / split, self.layout, f"gtFine folder of split {split!r}")
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
        img_root = _require_dir(self.root / "images", self.layout, "images folder")
        ann_root = _require_dir(self.root / "annotations", self.layout, "annotations folder")
        if (img_root / split).is_dir():
            img_dir = img_root / split
            ann_dir = _require_dir(ann_root / split, self.layout, f"annotation folder of split {split!r}")
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
