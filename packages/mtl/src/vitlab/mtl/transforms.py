"""The multi-task training augmentations of MTI-Net / MTLoRA / TADFormer (``mtinet``) and ATRC / InvPT (``invpt``).

* ``"mtinet"``: horizontal flip (normals' x negated) + ScaleNRotate (rotation ±20°, scale 0.75-1.25, about the
  centre, out-of-image pixels ignored) + FixedResize to ``size``. As in that code the normal vectors are warped as
  an image, not rotated.
* ``"invpt"``: random scaling [0.5, 2] + random crop to ``size`` (padding ignored) + flip + photometric distortion
  (core's :class:`~vitlab.core.data.PhotometricDistortion`; with the DataModules' ``photometric_on_device`` the same
  law runs per training batch on the device instead, :class:`~vitlab.core.data.BatchPhotometricDistortion`).
* ``"none"``: FixedResize only (evaluation always uses FixedResize to ``size``).

Targets are resampled with nearest neighbour, the image bilinearly.
"""

from __future__ import annotations

import math
import random
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from vitlab.core.data import IGNORE_INDEX, PhotometricDistortion

__all__ = ["AUGMENTATIONS", "MultiTaskTransform"]

AUGMENTATIONS = ("mtinet", "invpt", "none")
_LABEL_KEYS = ("semseg", "human_parts")


def _warp(sample: dict[str, Any], theta: Tensor, size: tuple[int, int]) -> dict[str, Any]:
    """Affine-resample every tensor to ``size``; outside the source: image 0, labels 255, others 0 (invalid)."""
    out = dict(sample)
    grid = F.affine_grid(theta[None], [1, 1, *size], align_corners=False)
    for k, v in sample.items():
        if not isinstance(v, Tensor):
            continue
        if k == "image":
            out[k] = F.grid_sample(v[None], grid, mode="bilinear", padding_mode="zeros", align_corners=False)[0]
        elif k in _LABEL_KEYS:
            x = F.grid_sample((v.float() + 1)[None, None], grid, mode="nearest", align_corners=False)[0, 0]
            out[k] = torch.where(x == 0, torch.full_like(x, IGNORE_INDEX), x - 1).long()
        else:
            out[k] = F.grid_sample(v[None].float(), grid, mode="nearest", align_corners=False)[0]
    return out


def _identity_theta() -> Tensor:
    return torch.tensor([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]])


class MultiTaskTransform:
    """Train/eval transform of one codebase (see the module docstring); ``size`` is the output (H, W).
    ``photometric=False`` leaves the ``invpt`` photometric distortion to the device."""

    def __init__(self, size: tuple[int, int], augmentation: str = "mtinet", train: bool = True,
                 rotation: float = 20.0, scale_range: tuple[float, float] = (0.75, 1.25),
                 crop_scale_range: tuple[float, float] = (0.5, 2.0), flip_prob: float = 0.5,
                 photometric: bool = True) -> None:
        if augmentation not in AUGMENTATIONS:
            raise ValueError(f"augmentation must be one of {AUGMENTATIONS}, got {augmentation!r}")
        self.size = tuple(size)
        self.augmentation = augmentation if train else "none"
        self.rotation = rotation
        self.scale_range = tuple(scale_range)
        self.crop_scale_range = tuple(crop_scale_range)
        self.flip_prob = flip_prob
        self.photometric = PhotometricDistortion() if photometric else None

    def _flip(self, sample: dict[str, Any]) -> dict[str, Any]:
        out = dict(sample)
        for k, v in sample.items():
            if isinstance(v, Tensor):
                out[k] = v.flip(-1)
        if "normals" in out:
            out["normals"] = out["normals"] * torch.tensor([-1.0, 1.0, 1.0]).view(3, 1, 1)
        return out

    def __call__(self, sample: dict[str, Any]) -> dict[str, Any]:
        if self.augmentation != "none" and random.random() < self.flip_prob:
            sample = self._flip(sample)
        h, w = sample["image"].shape[-2:]
        theta = _identity_theta()
        if self.augmentation == "mtinet":
            angle = math.radians(random.uniform(-self.rotation, self.rotation))
            sc = random.uniform(*self.scale_range)
            c, s = math.cos(angle), math.sin(angle)
            # output (normalised) → source: rotate by -angle, shrink by 1/scale (aspect-correct rotation)
            ar = w / h
            theta = torch.tensor([[c / sc, -s / sc / ar, 0.0], [s * ar / sc, c / sc, 0.0]])
        elif self.augmentation == "invpt":
            sc = random.uniform(*self.crop_scale_range)
            H, W = self.size
            # a crop of the (h·sc, w·sc) rescaled image: its extent in source normalised units
            fx, fy = W / (w * sc), H / (h * sc)
            ox = random.uniform(-(1 - fx), 1 - fx) if fx < 1 else 0.0
            oy = random.uniform(-(1 - fy), 1 - fy) if fy < 1 else 0.0
            theta = torch.tensor([[fx, 0.0, ox], [0.0, fy, oy]])
        sample = _warp(sample, theta, self.size)
        if self.augmentation == "invpt" and self.photometric is not None:
            sample["image"] = self.photometric(sample["image"])
        return sample

