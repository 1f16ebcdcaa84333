"""Batched photometric augmentation on the device: colour jitter, gamma, the stereo asymmetric colour, blur,
and mmseg's photometric distortion of dense tasks.

A DataModule calls it from ``on_after_batch_transfer`` (training batches only, before normalisation), so the
per-sample CPU work of the workers becomes a few batched kernels on the GPU; it runs on a CPU too.

The colour law is CroCo-Stereo's (`naver/croco` ``stereoflow/augmentor.py``, the law of
:class:`vitlab.stereo.StereoAugmentor`), drawn per image: with probability ``one_op_prob`` one colour op
chosen at random, otherwise all five in a random order; each op then fires with probability ``op_prob``:
contrast U(0.8, 1.2) (about the mean grey), gamma U(0.7, 1.5), brightness U(0.5, 2), hue U(+-0.1) of the
hue circle, saturation U(0.8, 1.2). For stereo pairs the right view gets the same ops in the same order, and
each op's factor is re-drawn for it with probability ``asym_prob`` (asymmetric colour), else the left view's. An optional Gaussian blur
(``blur_prob``, sigma U(``blur_sigma``)) follows.

Every random number is drawn on the batch's device and every decision is a per-sample ``torch.where``, so
the module never reads a value back to the host (kornia's augmentation containers do, about twenty times a
batch, to validate and dispatch their parameters): the kernels are kornia's functional ``adjust_*`` ops and a
separable per-sample Gaussian written here (kornia's ``gaussian_blur2d`` checks sigma on the host).

:class:`BatchPhotometricDistortion` draws mmseg's ``PhotoMetricDistortion`` law instead (the law of the
workers' :class:`vitlab.core.data.PhotometricDistortion`) with the same kernels and the same rules.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import kornia.enhance as KE
import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = ["BatchColorAugment", "BatchPhotometricDistortion", "gaussian_blur_per_sample", "COLOR_OPS"]

#: the five colour ops, in the index order of the parameter tensors
COLOR_OPS = ("contrast", "gamma", "brightness", "hue", "saturation")


def _uniform(lo: Tensor | float, hi: Tensor | float, shape: tuple[int, ...], device) -> Tensor:
    return lo + (hi - lo) * torch.rand(shape, device=device)


def _coin(p: float, shape: tuple[int, ...], device) -> Tensor:
    return torch.rand(shape, device=device) < p


def _where(mask: Tensor, new: Tensor, old: Tensor) -> Tensor:
    """Per-image choice: ``new`` where ``mask`` (B,) holds, else ``old`` (no host sync, unlike indexing)."""
    return torch.where(mask[:, None, None, None], new, old)


def _scale(x: Tensor, v: Tensor) -> Tensor:
    """Multiply every pixel of image b by ``v[b]`` (CroCo's brightness, mmseg's contrast)."""
    return x * v[:, None, None, None]


def _gamma(x: Tensor, v: Tensor) -> Tensor:
    """Raise image b to the power ``v[b]``: kornia's ``adjust_gamma`` law without its gain tensor, which it
    builds from a Python float on every call (a host-to-device copy per step on a GPU)."""
    return x.pow(v[:, None, None, None])


def _hue(x: Tensor, v: Tensor) -> Tensor:
    """Rotate the hue of image b by ``v[b]`` turns of the hue circle."""
    return KE.adjust_hue(x, v * (2 * math.pi))


def _as_float(x: Tensor, who: str) -> Tensor:
    if x.dtype == torch.uint8:
        return x.float().div_(255.0)
    if not x.is_floating_point():
        raise TypeError(f"{who}: images must be uint8 or float, got {x.dtype}")
    return x.float()


def _check_keys(batch: dict, keys: Sequence[str], who: str) -> None:
    for k in keys:
        if k not in batch:
            raise KeyError(f"{who}: batch has no {k!r} entry (keys: {sorted(batch)})")


def gaussian_blur_per_sample(x: Tensor, sigma: Tensor, kernel_size: int) -> Tensor:
    """Separable Gaussian blur of ``x`` (B, C, H, W) with one ``sigma`` (B,) per image (reflect padding)."""
    if kernel_size % 2 == 0 or kernel_size < 3:
        raise ValueError(f"kernel_size must be odd and >= 3, got {kernel_size}")
    B, C, H, W = x.shape
    t = torch.arange(kernel_size, device=x.device, dtype=x.dtype) - (kernel_size - 1) / 2
    w = torch.exp(-t[None] ** 2 / (2 * sigma.to(x.dtype)[:, None] ** 2))
    w = (w / w.sum(1, keepdim=True)).repeat_interleave(C, 0)  # (B*C, k)
    r = kernel_size // 2
    y = F.pad(x.reshape(1, B * C, H, W), (r, r, r, r), mode="reflect")
    y = F.conv2d(y, w[:, None, None, :], groups=B * C)
    y = F.conv2d(y, w[:, None, :, None], groups=B * C)
    return y.reshape(B, C, H, W)


class BatchColorAugment(nn.Module):
    """Photometric augmentation of a dict batch, per image, on the batch's device (see the module docstring).

    Args:
        keys: image entries; with two keys the second is the right view of a stereo pair (asymmetric colour).
        one_op_prob: probability of applying a single random op instead of all five in random order (0.5).
        op_prob: probability that each selected op fires (0.5).
        contrast, gamma, brightness, saturation: ranges of the factors ((0.8, 1.2), (0.7, 1.5), (0.5, 2.0),
            (0.8, 1.2)).
        hue: range of the hue shift as a fraction of the circle ((-0.1, 0.1)).
        asym_prob: probability that the right view gets its own parameters (0.5; stereo only).
        right_saturation: saturation range of re-drawn right-view parameters (default = ``saturation``).
        blur_prob: probability of a Gaussian blur per image (0 = off).
        blur_sigma: range of its sigma in pixels ((0.1, 2.0)); blur_kernel: odd kernel size (5).
        p: probability that an image is augmented at all (1.0).

    Images may be uint8 (0..255) or float in [0, 1]; the output is float in [0, 1] (normalise afterwards).
    Other batch entries (disparity, labels ...) pass through untouched.
    """

    def __init__(
        self,
        keys: Sequence[str] = ("image", "right"),
        one_op_prob: float = 0.5,
        op_prob: float = 0.5,
        contrast: Sequence[float] = (0.8, 1.2),
        gamma: Sequence[float] = (0.7, 1.5),
        brightness: Sequence[float] = (0.5, 2.0),
        hue: Sequence[float] = (-0.1, 0.1),
        saturation: Sequence[float] = (0.8, 1.2),
        asym_prob: float = 0.5,
        right_saturation: Sequence[float] | None = None,
        blur_prob: float = 0.0,
        blur_sigma: Sequence[float] = (0.1, 2.0),
        blur_kernel: int = 5,
        p: float = 1.0,
    ) -> None:
        super().__init__()
        keys = tuple(keys)
        if not 1 <= len(keys) <= 2:
            raise ValueError(f"BatchColorAugment: keys must name one image or a stereo pair, got {keys}")
        for name, v in (("one_op_prob", one_op_prob), ("op_prob", op_prob), ("asym_prob", asym_prob),
                        ("blur_prob", blur_prob), ("p", p)):
            if not 0.0 <= v <= 1.0:
                raise ValueError(f"BatchColorAugment: {name} must be in [0, 1], got {v}")
        ranges = {"contrast": contrast, "gamma": gamma, "brightness": brightness, "hue": hue,
                  "saturation": saturation, "blur_sigma": blur_sigma}
        for name, r in ranges.items():
            if len(r) != 2 or r[0] > r[1]:
                raise ValueError(f"BatchColorAugment: {name} must be a (low, high) range, got {tuple(r)}")
        if gamma[0] <= 0 or blur_sigma[0] <= 0:
            raise ValueError("BatchColorAugment: gamma and blur_sigma must be positive")
        self.keys = keys
        self.one_op_prob, self.op_prob, self.asym_prob, self.p = one_op_prob, op_prob, asym_prob, p
        self.blur_prob, self.blur_kernel = blur_prob, int(blur_kernel)
        self.blur_sigma = (float(blur_sigma[0]), float(blur_sigma[1]))
        lo = [contrast[0], gamma[0], brightness[0], hue[0], saturation[0]]
        hi = [contrast[1], gamma[1], brightness[1], hue[1], saturation[1]]
        rs = tuple(right_saturation) if right_saturation is not None else tuple(saturation)
        self.register_buffer("lo", torch.tensor([lo, lo[:4] + [rs[0]]], dtype=torch.float32), persistent=False)
        self.register_buffer("hi", torch.tensor([hi, hi[:4] + [rs[1]]], dtype=torch.float32), persistent=False)

    # ------------------------------------------------------------------ parameters
    def sample(self, batch: int, device, right: bool = False) -> dict[str, Tensor]:
        """Per-image parameters: ``order`` (B, 5) op indices per slot, ``active`` (B, 5) bool per slot,
        ``values`` (B, 5) factor per op (index order :data:`COLOR_OPS`), ``blur`` (B,) bool, ``sigma`` (B,)."""
        r = int(right)
        order = torch.argsort(torch.rand(batch, 5, device=device), dim=1)
        one = _coin(self.one_op_prob, (batch, 1), device)
        slot = torch.arange(5, device=device)[None]
        fire = _coin(self.op_prob, (batch, 5), device)
        keep = _coin(self.p, (batch, 1), device)
        active = fire & (~one | (slot == 0)) & keep
        values = _uniform(self.lo[r].to(device), self.hi[r].to(device), (batch, 5), device)
        blur = _coin(self.blur_prob, (batch,), device) & keep[:, 0]
        sigma = _uniform(*self.blur_sigma, (batch,), device)
        return {"order": order, "active": active, "values": values, "blur": blur, "sigma": sigma}

    def right_params(self, left: dict[str, Tensor]) -> dict[str, Tensor]:
        """CroCo's asymmetry: the right view gets the left view's ops, order and blur; each op's factor is
        re-drawn with probability ``asym_prob`` (per image and op), else shared. So the right view never
        changes when the left one does not."""
        B, device = left["values"].shape[0], left["values"].device
        redraw = self.sample(B, device, right=True)["values"]
        asym = _coin(self.asym_prob, (B, 5), device)
        return {**left, "values": torch.where(asym, redraw, left["values"])}

    # ------------------------------------------------------------------ application
    @staticmethod
    def _op(x: Tensor, op: int, v: Tensor) -> Tensor:
        if op == 0:
            return KE.adjust_contrast_with_mean_subtraction(x, v)
        if op == 1:
            return _gamma(x, v)
        if op == 2:
            return _scale(x, v)
        if op == 3:
            return _hue(x, v)
        return KE.adjust_saturation(x, v)

    def apply(self, x: Tensor, params: dict[str, Tensor]) -> Tensor:
        """Augment images ``x`` (B, 3, H, W) in [0, 1] with ``params`` from :meth:`sample`."""
        order, active, values = params["order"], params["active"], params["values"]
        for k in range(5):
            for op in range(5):
                m = active[:, k] & (order[:, k] == op)
                x = _where(m, self._op(x, op, values[:, op]).clamp(0, 1), x)
        if self.blur_prob > 0:
            x = _where(params["blur"], gaussian_blur_per_sample(x, params["sigma"], self.blur_kernel), x)
        return x.clamp(0, 1)

    @torch.no_grad()
    def forward(self, batch: dict[str, Tensor]) -> dict[str, Tensor]:
        _check_keys(batch, self.keys, "BatchColorAugment")
        out = dict(batch)
        left = _as_float(batch[self.keys[0]], "BatchColorAugment")
        B, device = left.shape[0], left.device
        p_left = self.sample(B, device)
        out[self.keys[0]] = self.apply(left, p_left)
        if len(self.keys) == 2:
            right = _as_float(batch[self.keys[1]], "BatchColorAugment")
            out[self.keys[1]] = self.apply(right, self.right_params(p_left))
        return out


class BatchPhotometricDistortion(nn.Module):
    """mmseg's ``PhotoMetricDistortion`` per image on the batch's device (the law of the workers'
    :class:`vitlab.core.data.PhotometricDistortion`, which dense DataModules run here with
    ``photometric_on_device``).

    Each step fires with probability ``prob`` (mmseg: 1/2), independently per image: brightness
    ``+ U(-brightness_delta, brightness_delta)``; contrast ``x U(contrast_range)``, before or after the colour
    steps (a per-image coin); saturation ``U(saturation_range)`` (a blend with the grey image, as torchvision's);
    hue ``+ U(-hue_delta, hue_delta)`` of the hue circle. Every step clamps to [0, 1].

    ``forward(batch, valid)`` changes ``batch[key]`` only; with ``valid`` (B, H, W) bool, False pixels (the
    padding of a padded batch) keep their values, as on the CPU, where the jitter runs before padding.

    Follows mmseg: the four steps, their order, probabilities and ranges [code]. Reconstruction: the saturation
    and hue operators are kornia's grey blend and HSV rotation (as the CPU class's torchvision ops), not mmseg's
    OpenCV HSV arithmetic on uint8; per-image draws on the device replace mmseg's per-sample host RNG.
    """

    #: the four steps, in the column order of the parameter tensors
    STEPS = ("brightness", "contrast", "saturation", "hue")

    def __init__(self, brightness_delta: float = 32 / 255, contrast_range: Sequence[float] = (0.5, 1.5),
                 saturation_range: Sequence[float] = (0.5, 1.5), hue_delta: float = 0.1, prob: float = 0.5,
                 key: str = "image") -> None:
        super().__init__()
        for name, r in (("contrast_range", contrast_range), ("saturation_range", saturation_range)):
            if len(r) != 2 or not 0 <= r[0] <= r[1]:
                raise ValueError(f"BatchPhotometricDistortion: {name} must be a (low, high) range >= 0, got {tuple(r)}")
        if brightness_delta < 0 or hue_delta < 0 or not 0.0 <= prob <= 1.0:
            raise ValueError("BatchPhotometricDistortion: brightness_delta and hue_delta must be >= 0, prob in [0, 1]")
        self.key, self.prob = key, prob
        lo = [-brightness_delta, contrast_range[0], saturation_range[0], -hue_delta]
        hi = [brightness_delta, contrast_range[1], saturation_range[1], hue_delta]
        self.register_buffer("lo", torch.tensor(lo, dtype=torch.float32), persistent=False)
        self.register_buffer("hi", torch.tensor(hi, dtype=torch.float32), persistent=False)

    def sample(self, batch: int, device) -> dict[str, Tensor]:
        """Per-image parameters: ``fire`` (B, 4) bool and ``values`` (B, 4) per step (order :attr:`STEPS`),
        ``contrast_first`` (B,) bool."""
        return {"fire": _coin(self.prob, (batch, 4), device),
                "contrast_first": _coin(0.5, (batch,), device),
                "values": _uniform(self.lo.to(device), self.hi.to(device), (batch, 4), device)}

    def apply(self, x: Tensor, params: dict[str, Tensor]) -> Tensor:
        """Distort images ``x`` (B, 3, H, W) in [0, 1] with ``params`` from :meth:`sample`."""
        fire, v, first = params["fire"], params["values"], params["contrast_first"]
        x = _where(fire[:, 0], KE.adjust_brightness(x, v[:, 0]), x)
        x = _where(fire[:, 1] & first, _scale(x, v[:, 1]).clamp(0, 1), x)
        x = _where(fire[:, 2], KE.adjust_saturation_with_gray_subtraction(x, v[:, 2]), x)
        x = _where(fire[:, 3], _hue(x, v[:, 3]).clamp(0, 1), x)
        return _where(fire[:, 1] & ~first, _scale(x, v[:, 1]).clamp(0, 1), x)

    @torch.no_grad()
    def forward(self, batch: dict[str, Tensor], valid: Tensor | None = None) -> dict[str, Tensor]:
        _check_keys(batch, (self.key,), "BatchPhotometricDistortion")
        x = _as_float(batch[self.key], "BatchPhotometricDistortion")
        y = self.apply(x, self.sample(x.shape[0], x.device))
        if valid is not None:
            y = torch.where(valid[:, None].to(torch.bool), y, x)
        return {**batch, self.key: y}
