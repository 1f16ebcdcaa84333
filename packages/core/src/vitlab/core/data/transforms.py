"""Paired geometric transforms on sample dicts (image + dense targets moved together) and mmseg's photometric
distortion, shared by every dense DataModule (core, mtl, uda).

Samples are dicts of tensors: ``image`` (3, H, W) float in [0, 1], plus dense targets (label maps (H, W) int64 with
255 = ignore, continuous maps (C, H, W) float with +inf = invalid). Targets are always resized with nearest-neighbour
sampling, so a resized label or depth map only holds values of the original one.
"""

from __future__ import annotations

import math
import random
from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor
from torch.utils.data import default_collate
from torchvision.transforms.v2 import functional as TF

from vitlab.core.data.constants import IGNORE_INDEX, IMAGENET_MEAN

__all__ = [
    "DenseEvalTransform",
    "DenseTrainTransform",
    "EVAL_MODES",
    "PhotometricDistortion",
    "VALID_KEY",
    "crop_sample",
    "dense_collate",
    "hflip_sample",
    "pad_sample",
    "pair",
    "rescale_size",
    "resize_sample",
]

Sample = dict[str, Tensor]
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


def pair(size: int | Sequence[int], name: str) -> tuple[int, int]:
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
        self.crop_size = pair(crop_size, "crop_size")
        self.scale = None if scale is None else pair(scale, "scale")
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
        self.size = None if size is None else pair(size, "size")
        self.scale = None if scale is None else pair(scale, "scale")
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

