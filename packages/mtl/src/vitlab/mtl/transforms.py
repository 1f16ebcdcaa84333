"""The multi-task training augmentations of MTI-Net / MTLoRA / TADFormer (``mtinet``) and ATRC / InvPT (``invpt``).

* ``"mtinet"`` follows the official ``custom_transforms.py`` of MTI-Net, which MTLoRA (`scale-lab/MTLoRA`),
  TADFormer and SCA_MTL copy: horizontal flip (normals' x negated), then **ScaleNRotate** at the source size
  (angle uniform in ±``rotation``°, scale uniform in ``scale_range``, drawn in that order after the flip, as the
  official code draws them; OpenCV's ``getRotationMatrix2D`` about the pixel point (w/2, h/2); the image and the
  normals resampled bicubically, every label with nearest neighbour; the **in-plane normal components rotated**
  by the same angle; depth divided by the scale), then **FixedResize** to ``size`` (bicubic for image and normals,
  nearest for labels, as ``cv2.resize``; normals renormalised to unit length). Outside the rotated image everything is 0 (``fill="zero"``, the
  official ``warpAffine`` border): black image, semseg/parts background, no saliency or edge, zero normals and
  zero depth (both invalid). ``fill="ignore"`` instead marks semseg/parts there 255 (ignored by the losses and
  metrics), which avoids teaching the border as background; it is not the default because the published
  numbers were trained with the zero fill.
* ``"invpt"``: random scaling [0.5, 2] + random crop to ``size`` (padding ignored) + flip + photometric distortion
  (core's :class:`~vitlab.core.data.PhotometricDistortion`; with the DataModules' ``photometric_on_device`` the same
  law runs per training batch on the device instead, :class:`~vitlab.core.data.BatchPhotometricDistortion`).
  Targets are resampled with nearest neighbour, the image bilinearly, in one affine resampling.
* ``"none"``: FixedResize only (evaluation always uses FixedResize to ``size``, the ``mtinet`` one).

Equal to the official code on fixed draws (``tests/mtl/test_golden_mtl_transforms.py``): labels exactly, image
and normals up to OpenCV's fixed-point bicubic weights. Images are in [0, 1] here (0-255 in the official code)
and leave the workers as uint8, which clips the bicubic overshoot.
"""

from __future__ import annotations

import math
import random
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from vitlab.core.data import IGNORE_INDEX, PhotometricDistortion

__all__ = ["AUGMENTATIONS", "FILLS", "MultiTaskTransform", "fixed_resize", "rotation_matrix", "scale_rotate"]

AUGMENTATIONS = ("mtinet", "invpt", "none")
FILLS = ("zero", "ignore")
_LABEL_KEYS = ("semseg", "human_parts")
_CUBIC_KEYS = ("image", "normals")  # the official FLAGVALS: INTER_CUBIC for these, INTER_NEAREST for the rest


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


def rotation_matrix(h: int, w: int, angle: float, scale: float) -> Tensor:
    """OpenCV's ``getRotationMatrix2D((w/2, h/2), angle, scale)``: (2, 3), source pixel → output pixel,
    ``angle`` in degrees, counter-clockwise on screen."""
    a = math.radians(angle)
    al, be = scale * math.cos(a), scale * math.sin(a)
    cx, cy = w / 2, h / 2
    return torch.tensor([[al, be, (1 - al) * cx - be * cy], [-be, al, be * cx + (1 - al) * cy]], dtype=torch.float64)


def _pixel_to_grid(M: Tensor, h: int, w: int) -> Tensor:
    """The ``affine_grid`` theta (align_corners=False) of the warp whose output pixel (x, y) reads the source
    pixel ``M⁻¹ (x, y)`` (what ``cv2.warpAffine(src, M, (w, h))`` samples), pixel centres at integers."""
    A = torch.eye(3, dtype=torch.float64)
    A[:2] = M
    N = torch.tensor([[2 / w, 0, 1 / w - 1], [0, 2 / h, 1 / h - 1], [0, 0, 1]], dtype=torch.float64)
    return (N @ torch.linalg.inv(A) @ torch.linalg.inv(N))[:2].float()


def rotate_normals(n: Tensor, angle: float) -> Tensor:
    """Rotate the in-plane (x, y) components of (3, H, W) normals by ``angle`` degrees as the official
    ScaleNRotate does: with φ = atan2(x, y) and ρ = |(x, y)|, x ← ρ sin(φ + angle), y ← ρ cos(φ + angle)."""
    a = math.radians(angle)
    c, s = math.cos(a), math.sin(a)
    x, y = n[0], n[1]
    return torch.stack([x * c + y * s, y * c - x * s, n[2]])


def scale_rotate(sample: dict[str, Any], angle: float, scale: float, fill: str = "zero") -> dict[str, Any]:
    """The official ScaleNRotate with a given ``angle`` (degrees) and ``scale``, at the source size."""
    if fill not in FILLS:
        raise ValueError(f"fill must be one of {FILLS}, got {fill!r}")
    h, w = sample["image"].shape[-2:]
    theta = _pixel_to_grid(rotation_matrix(h, w, angle, scale), h, w)
    grid = F.affine_grid(theta[None], [1, 1, h, w], align_corners=False)
    out = dict(sample)
    for k, v in sample.items():
        if not isinstance(v, Tensor):
            continue
        x = rotate_normals(v.float(), angle) if k == "normals" else v.float()
        flat = x.dim() == 2
        x = x[None] if flat else x
        ignore = k in _LABEL_KEYS and fill == "ignore"
        mode = "bicubic" if k in _CUBIC_KEYS else "nearest"
        y = F.grid_sample((x + 1 if ignore else x)[None], grid, mode=mode, padding_mode="zeros",
                          align_corners=False)[0]
        if ignore:
            y = torch.where(y == 0, torch.full_like(y, IGNORE_INDEX), y - 1)
        if k == "depth":
            y = y / scale
        y = y[0] if flat else y
        out[k] = y if v.is_floating_point() else y.to(v.dtype)
    return out


def fixed_resize(sample: dict[str, Any], size: tuple[int, int]) -> dict[str, Any]:
    """The official FixedResize: ``cv2.resize`` bicubic for image and normals, nearest (floor of the scaled
    index, as OpenCV and ``F.interpolate(mode="nearest")``) for every label; then the normals are renormalised
    to unit length (``n / (|n| + eps)``, zero normals stay zero), as the official code does on every call."""
    out = dict(sample)
    for k, v in sample.items():
        if not isinstance(v, Tensor):
            continue
        if tuple(v.shape[-2:]) == tuple(size):
            if k == "normals":
                out[k] = v / (v.norm(dim=0, keepdim=True) + torch.finfo(torch.float64).eps)
            continue
        x = v.float()
        flat = x.dim() == 2
        x = x[None] if flat else x
        mode = "bicubic" if k in _CUBIC_KEYS else "nearest"
        y = F.interpolate(x[None], size=tuple(size), mode=mode, **({"align_corners": False} if mode == "bicubic" else {}))[0]
        y = y[0] if flat else y
        if k == "normals":
            y = y / (y.norm(dim=0, keepdim=True) + torch.finfo(torch.float64).eps)
        out[k] = y if v.is_floating_point() else y.to(v.dtype)
    return out


class MultiTaskTransform:
    """Train/eval transform of one codebase (see the module docstring); ``size`` is the output (H, W).
    ``photometric=False`` leaves the ``invpt`` photometric distortion to the device; ``fill`` (:data:`FILLS`) is
    what ``mtinet`` puts in semseg/parts outside the rotated image: ``"zero"`` (official) or ``"ignore"`` (255)."""

    def __init__(self, size: tuple[int, int], augmentation: str = "mtinet", train: bool = True,
                 rotation: float = 20.0, scale_range: tuple[float, float] = (0.75, 1.25),
                 crop_scale_range: tuple[float, float] = (0.5, 2.0), flip_prob: float = 0.5,
                 photometric: bool = True, fill: str = "zero") -> None:
        if augmentation not in AUGMENTATIONS:
            raise ValueError(f"augmentation must be one of {AUGMENTATIONS}, got {augmentation!r}")
        if fill not in FILLS:
            raise ValueError(f"fill must be one of {FILLS}, got {fill!r}")
        self.size = tuple(size)
        self.augmentation = augmentation if train else "none"
        self.rotation = rotation
        self.scale_range = tuple(scale_range)
        self.crop_scale_range = tuple(crop_scale_range)
        self.flip_prob = flip_prob
        self.fill = fill
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
        if self.augmentation == "mtinet":
            angle = random.uniform(-self.rotation, self.rotation)  # the official draw order: angle, then scale
            sc = random.uniform(*self.scale_range)
            sample = scale_rotate(sample, angle, sc, self.fill)
        if self.augmentation != "invpt":
            return fixed_resize(sample, self.size)
        h, w = sample["image"].shape[-2:]
        sc = random.uniform(*self.crop_scale_range)
        H, W = self.size
        # a crop of the (h·sc, w·sc) rescaled image: its extent in source normalised units
        fx, fy = W / (w * sc), H / (h * sc)
        ox = random.uniform(-(1 - fx), 1 - fx) if fx < 1 else 0.0
        oy = random.uniform(-(1 - fy), 1 - fy) if fy < 1 else 0.0
        sample = _warp(sample, torch.tensor([[fx, 0.0, ox], [0.0, fy, oy]]), self.size)
        if self.photometric is not None:
            sample["image"] = self.photometric(sample["image"])
        return sample
