"""CroCo-Stereo training augmentation (`naver/croco` ``stereoflow/augmentor.py`` ``StereoAugmentor``), re-implemented
on torch tensors (works per sample in DataLoader workers, or on a device).

Order and probabilities [code]: x-only random scale (p 0.5) -> random crop -> vertical flip (p 0.5) ->
right-view jitter (p 0.5) -> asymmetric colour -> (normalisation happens in the DataModule).
"""

from __future__ import annotations

import math
import random

import kornia.enhance as KE
import torch
import torch.nn.functional as F

from vitlab.core.data import sample_seed

__all__ = ["StereoAugmentor"]

_COLOR_OPS = ("contrast", "gamma", "brightness", "hue", "saturation")


def _resize(x: torch.Tensor, size: tuple[int, int], mode: str) -> torch.Tensor:
    kw = {"align_corners": False} if mode == "bilinear" else {}
    return F.interpolate(x[None], size=size, mode=mode, **kw)[0]


class StereoAugmentor:
    """Augment one sample ``{"image", "right": (3, H, W) in [0, 1], "disparity": (1, H, W) inf invalid, ...}``.

    Args:
        crop_size: output ``(h, w)``; multiples of 32 (CroCo-Stereo: 352 x 704).
        scale_prob: probability of the x-only scale (0.5). ``s = 2^U(0, 1)`` if ``min(H, W) < 800`` else
            ``2^U(-0.2, 0.4)``; clipped so the width stays >= ``crop_w + 8``. Images bilinear, disparity
            nearest and multiplied by ``s`` (x-only: rows keep their height). Without scaling the pair is
            upscaled only when smaller than the crop.
        vflip_prob: vertical flip of both views and the disparity (0.5).
        right_jitter_prob: rotation of the right view by U(+-0.1 deg) about a random centre plus a vertical
            shift U(+-2 px) (0.5).
        color_one_prob: probability of applying one random colour op instead of all five in random order (0.5);
            each op fires with p 0.5: contrast U(0.8, 1.2), gamma U(0.7, 1.5), brightness U(0.5, 2),
            hue U(+-0.1) (fraction of the hue circle), saturation U(0.8, 1.2).
        asym_prob: for every colour op applied to the left view, the right view gets an independently
            re-sampled parameter with this probability (0.5), otherwise the left one; both views get the same
            ops in the same order, so the right view is never changed when the left one is not (as CroCo).
        right_saturation: saturation range of the re-sampled right view; CroCo's code has (-0.8, 1.2) there
            (a typo); default (0.8, 1.2), pass [-0.8, 1.2] to reproduce it.
        seed: optional seed of this augmentor's private RNG.
        color: apply the asymmetric colour here (default). ``False`` leaves it to a batched device augmentation
            (:class:`vitlab.core.data.BatchColorAugment`, ``StereoDataModule(color_on_device=True)``).

    Randomness: inside a vitlab DataModule every sample is loaded under
    :func:`vitlab.core.data.sample_seeding`, and the RNG is then ``Random`` of that sample's seed (and ``seed``):
    a pair's augmentation depends only on (data seed, epoch, index), which makes a mid-epoch resume exact.
    Used on its own, the private ``random.Random`` is derived lazily in the process that uses it, from
    ``torch.initial_seed()`` (and ``seed`` when given), and re-derived when that changes. A DataLoader worker
    has its own ``torch.initial_seed()`` (base seed + worker id; the loader's ``worker_init_fn`` folds the DDP
    rank in), so workers and ranks draw differently, while a seeded run (``seed_everything``) reproduces
    exactly. In the main process (``num_workers=0``) with an explicit ``seed`` the stream is ``Random(seed)`` on
    rank 0 and is derived from ``seed`` and the rank on the other DDP ranks.
    Other keys (``occlusion`` masks ...) follow the geometric ops with nearest resampling.
    """

    def __init__(
        self,
        crop_size: tuple[int, int] | list[int] = (352, 704),
        scale_prob: float = 0.5,
        vflip_prob: float = 0.5,
        right_jitter_prob: float = 0.5,
        color_one_prob: float = 0.5,
        asym_prob: float = 0.5,
        right_saturation: tuple[float, float] | list[float] = (0.8, 1.2),
        seed: int | None = None,
        color: bool = True,
    ) -> None:
        self.crop = (int(crop_size[0]), int(crop_size[1]))
        self.color = bool(color)
        if self.crop[0] % 32 or self.crop[1] % 32:
            raise ValueError(f"crop_size must be multiples of 32 (DPT fusion), got {self.crop}")
        self.scale_prob, self.vflip_prob = scale_prob, vflip_prob
        self.right_jitter_prob, self.color_one_prob, self.asym_prob = right_jitter_prob, color_one_prob, asym_prob
        self.right_saturation = tuple(right_saturation)
        self.seed = seed
        self._rng: random.Random | None = None
        self._rng_key: tuple | None = None

    @property
    def rng(self) -> random.Random:
        """The RNG of the current sample or process (see the class docstring)."""
        per_sample = sample_seed()
        if per_sample is not None:
            key = ("sample", per_sample)
            if key != self._rng_key:
                self._rng = random.Random(per_sample if self.seed is None else f"{self.seed}/{per_sample}")
                self._rng_key = key
            return self._rng
        info = torch.utils.data.get_worker_info()
        rank = torch.distributed.get_rank() if torch.distributed.is_available() and torch.distributed.is_initialized() else 0
        key = (torch.initial_seed(), None if info is None else info.id, rank)
        if self._rng is None or key != self._rng_key:
            if self.seed is not None and info is None:
                self._rng = random.Random(self.seed if rank == 0 else f"{self.seed}/rank{rank}")
            elif self.seed is not None:
                self._rng = random.Random(f"{self.seed}/{key[0]}/{key[1]}")
            else:
                self._rng = random.Random(key[0])
            self._rng_key = key
        return self._rng

    # ------------------------------------------------------------------ geometry
    def _scale(self, s: dict) -> dict:
        H, W = s["image"].shape[-2:]
        ch, cw = self.crop
        sx, sy = 1.0, 1.0
        if self.rng.random() < self.scale_prob:
            lo, hi = (0.0, 1.0) if min(H, W) < 800 else (-0.2, 0.4)
            sx = 2 ** self.rng.uniform(lo, hi)
            sx = max(sx, (cw + 8) / W)
        sy = max(1.0, ch / H)
        sx = max(sx, cw / W)
        if sx == 1.0 and sy == 1.0:
            return s
        size = (max(ch, round(H * sy)), max(cw, round(W * sx)))
        sx_eff = size[1] / W
        out = dict(s)
        for k in ("image", "right"):
            out[k] = _resize(s[k], size, "bilinear")
        out["disparity"] = _resize(s["disparity"], size, "nearest") * sx_eff
        for k, v in s.items():
            if k not in out or k in ("image", "right", "disparity"):
                continue
            if torch.is_tensor(v) and v.ndim == 3 and v.shape[-2:] == (H, W):
                out[k] = _resize(v.float(), size, "nearest").to(v.dtype)
        return out

    def _crop(self, s: dict) -> dict:
        H, W = s["image"].shape[-2:]
        ch, cw = self.crop
        y = self.rng.randint(0, H - ch)
        x = self.rng.randint(0, W - cw)
        return {k: (v[..., y:y + ch, x:x + cw] if torch.is_tensor(v) and v.ndim == 3 and v.shape[-2:] == (H, W)
                    else v) for k, v in s.items()}

    def _jitter_right(self, right: torch.Tensor) -> torch.Tensor:
        _, H, W = right.shape
        angle = math.radians(self.rng.uniform(-0.1, 0.1))
        cx, cy = self.rng.uniform(0, W - 1), self.rng.uniform(0, H - 1)
        dy = self.rng.uniform(-2, 2)
        cos, sin = math.cos(angle), math.sin(angle)
        ys, xs = torch.meshgrid(torch.arange(H, dtype=right.dtype), torch.arange(W, dtype=right.dtype),
                                indexing="ij")
        # sample the source pixel of every output pixel: inverse rotation about (cx, cy), minus the shift
        xr, yr = xs - cx, ys - dy - cy
        sx = cos * xr + sin * yr + cx
        sy = -sin * xr + cos * yr + cy
        grid = torch.stack([2 * sx / (W - 1) - 1, 2 * sy / (H - 1) - 1], dim=-1)[None]
        return F.grid_sample(right[None], grid, mode="bilinear", padding_mode="border", align_corners=True)[0]

    # ------------------------------------------------------------------ colour
    def _sample_color(self) -> list[tuple[str, float, float]]:
        """``[(op, left value, right value), ...]`` in application order (CroCo's ``_random_color``)."""
        rng = self.rng
        if rng.random() < self.color_one_prob:
            ops = [rng.choice(_COLOR_OPS)]
        else:
            ops = list(_COLOR_OPS)
            rng.shuffle(ops)
        ranges = {"contrast": (0.8, 1.2), "gamma": (0.7, 1.5), "brightness": (0.5, 2.0), "hue": (-0.1, 0.1),
                  "saturation": (0.8, 1.2)}
        out = []
        for op in ops:
            if rng.random() >= 0.5:
                continue
            v = rng.uniform(*ranges[op])
            vr = v
            if rng.random() < self.asym_prob:
                vr = rng.uniform(*(self.right_saturation if op == "saturation" else ranges[op]))
            out.append((op, v, vr))
        return out

    @staticmethod
    def _apply_color(img: torch.Tensor, params: list[tuple[str, float]]) -> torch.Tensor:
        x = img[None]
        for op, v in params:
            if op == "contrast":
                x = KE.adjust_contrast_with_mean_subtraction(x, v)
            elif op == "gamma":
                x = KE.adjust_gamma(x, v)
            elif op == "brightness":
                x = (x * v).clamp(0, 1)
            elif op == "hue":
                x = KE.adjust_hue(x, v * 2 * math.pi)
            elif op == "saturation":
                x = KE.adjust_saturation(x, v)
        return x[0].clamp(0, 1)

    def __call__(self, sample: dict) -> dict:
        s = self._scale(sample)
        s = self._crop(s)
        if self.rng.random() < self.vflip_prob:
            s = {k: (v.flip(-2) if torch.is_tensor(v) and v.ndim == 3 else v) for k, v in s.items()}
        if self.rng.random() < self.right_jitter_prob:
            s["right"] = self._jitter_right(s["right"])
        if self.color:
            params = self._sample_color()
            s["image"] = self._apply_color(s["image"], [(op, v) for op, v, _ in params])
            s["right"] = self._apply_color(s["right"], [(op, v) for op, _, v in params])
        return s
