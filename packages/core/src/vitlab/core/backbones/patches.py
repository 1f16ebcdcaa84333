"""Patch-level building blocks of masked image modelling, shared by pre-training and stereo.

* :func:`patchify` / :func:`unpatchify`: images <-> per-patch pixel vectors in the MAE / CroCo order
  (``nchpwq -> nhwpqc``: patches in raster order, pixel-major and channel-last inside a patch);
* :func:`norm_pix_target`: the ``norm_pix_loss`` target, every patch standardised with its own mean and
  unbiased variance + 1e-6 (MAE ``models_mae.forward_loss``; CroCo ``MaskedMSE(norm_pix=True)``);
* :func:`masked_mse`: per-patch mean squared error averaged over masked patches only;
* :class:`MaskOutput` / :func:`mask_from_shuffle` / :func:`random_masking`: per-sample random masking from
  ``argsort(U[0, 1])``. MAE (``random_masking``) keeps ``int(L (1 - r))`` patches; CroCo (``RandomMask``) masks
  ``int(r L)`` patches; ``count`` picks the rule (they differ by one patch when ``r L`` is not an integer).

Facts from MAE (He et al. 2022, `facebookresearch/mae`) and CroCo / CroCo v2 (Weinzaepfel et al.,
`naver/croco`); re-implemented.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

__all__ = [
    "MaskOutput",
    "mask_from_shuffle",
    "masked_mse",
    "norm_pix_target",
    "patchify",
    "random_masking",
    "unpatchify",
]

MASK_COUNT_RULES = ("keep", "mask")


def patchify(images: Tensor, patch_size: int) -> Tensor:
    """``(B, C, H, W)`` -> ``(B, L, p*p*C)`` in MAE's order (``nchpwq -> nhwpqc``: pixel-major, channel last)."""
    B, C, H, W = images.shape
    p = patch_size
    if H % p or W % p:
        raise ValueError(f"patchify: image {H}x{W} is not a multiple of patch size {p}")
    h, w = H // p, W // p
    x = images.reshape(B, C, h, p, w, p)
    return torch.einsum("nchpwq->nhwpqc", x).reshape(B, h * w, p * p * C)


def unpatchify(patches: Tensor, patch_size: int, grid: tuple[int, int], channels: int = 3) -> Tensor:
    """Inverse of :func:`patchify`: ``(B, L, p*p*C)`` -> ``(B, C, h*p, w*p)``."""
    B = patches.shape[0]
    h, w = grid
    p = patch_size
    x = patches.reshape(B, h, w, p, p, channels)
    return torch.einsum("nhwpqc->nchpwq", x).reshape(B, channels, h * p, w * p)


def norm_pix_target(target: Tensor, eps: float = 1e-6) -> Tensor:
    """``norm_pix_loss`` target: per patch ``(t - mean) / sqrt(var + eps)``, ``var`` unbiased (``torch.var``)."""
    mean = target.mean(dim=-1, keepdim=True)
    var = target.var(dim=-1, keepdim=True)  # unbiased, as the official MAE / CroCo code
    return (target - mean) / (var + eps) ** 0.5


def masked_mse(pred: Tensor, target: Tensor, mask: Tensor) -> Tensor:
    """``sum_i m_i mean_j (p_ij - t_ij)^2 / sum_i m_i`` over patches ``i`` (``mask`` (B, L), 1/True = masked).

    Computed in fp32; 0 (with its graph) when nothing is masked.
    """
    loss = ((pred.float() - target.float()) ** 2).mean(dim=-1)
    m = mask.to(loss.dtype)
    return (loss * m).sum() / m.sum().clamp_min(1.0)


@dataclass
class MaskOutput:
    """One batch of masks on an ``h x w`` patch grid (``L = h*w``).

    Attributes:
        mask: ``(B, L)`` float, 1 = masked / removed, 0 = visible (MAE convention), raster order.
        ids_shuffle: ``(B, L)`` int64; the first ``len_keep[b]`` entries are the visible patches of image b.
        ids_restore: ``(B, L)`` int64, the inverse permutation (``ids_shuffle.gather(1, ids_restore) = arange``).
        len_keep: ``(B,)`` int64 number of visible patches per image.
        grid: ``(h, w)``.
        ratio: ``(B,)`` float, the masking ratio each image was asked for (AMR changes it per batch/image).
        keep_max, keep_min: host-side bounds ``keep_min <= len_keep[b] <= keep_max`` known without reading
            the device (the generator knows them from its ratios). ``keep_max`` fixes the width of
            ``ids_keep``, so token dropping has a static shape and never syncs; ``None`` = unknown, then
            they are read from ``len_keep`` (one host sync each).
    """

    mask: Tensor
    ids_shuffle: Tensor
    ids_restore: Tensor
    len_keep: Tensor
    grid: tuple[int, int]
    ratio: Tensor
    keep_max: int | None = None
    keep_min: int | None = None

    @property
    def max_keep(self) -> int:
        """Width of :attr:`ids_keep`: the host-known bound, else ``max(len_keep)`` (a host sync)."""
        if self.keep_max is not None:
            return self.keep_max
        return int(self.len_keep.max())

    @property
    def min_keep(self) -> int:
        """Smallest number of visible patches of an image (host-known bound, else read from the device)."""
        if self.keep_min is not None:
            return self.keep_min
        return int(self.len_keep.min())

    @property
    def uniform(self) -> bool:
        """True when every image keeps the same number of patches (no padding needed to drop tokens).

        Decided on the host when the generator gave equal bounds; with unequal bounds ``ids_keep`` may hold
        padding and consumers mask it (:attr:`keep_valid`) even if this batch happens to be uniform.
        """
        if self.keep_max is not None and self.keep_min is not None:
            return self.keep_max == self.keep_min
        return bool((self.len_keep == self.len_keep[0]).all())

    @property
    def ids_keep(self) -> Tensor:
        """``(B, max_keep)`` kept patch indices; with per-image ratios the tail of short rows is padding."""
        return self.ids_shuffle[:, : self.max_keep]

    @property
    def keep_valid(self) -> Tensor:
        """``(B, max_keep)`` bool: False marks padding slots of ``ids_keep`` (only with per-image ratios)."""
        ar = torch.arange(self.max_keep, device=self.len_keep.device)
        return ar[None] < self.len_keep[:, None]

    def mask_2d(self) -> Tensor:
        """``(B, 1, h, w)`` float mask."""
        h, w = self.grid
        return self.mask.reshape(-1, 1, h, w)

    def pixel_mask(self, patch_size: int) -> Tensor:
        """``(B, 1, H, W)`` float mask upsampled to pixels (SimMIM ``repeat_interleave``)."""
        m = self.mask_2d()
        return m.repeat_interleave(patch_size, 2).repeat_interleave(patch_size, 3)


def mask_from_shuffle(ids_shuffle: Tensor, len_keep: Tensor, grid: tuple[int, int], ratio: Tensor,
                      keep_max: int | None = None, keep_min: int | None = None) -> MaskOutput:
    """Build a :class:`MaskOutput` from a per-sample ordering (visible first) and per-image keep counts
    (``keep_max`` / ``keep_min``: host-known bounds of ``len_keep``, see :class:`MaskOutput`)."""
    B, L = ids_shuffle.shape
    ids_restore = torch.argsort(ids_shuffle, dim=1)
    ar = torch.arange(L, device=ids_shuffle.device)
    mask_shuffled = (ar[None] >= len_keep[:, None]).float()  # 0 = keep, in shuffled order
    mask = torch.gather(mask_shuffled, 1, ids_restore)
    return MaskOutput(mask, ids_shuffle, ids_restore, len_keep, grid, ratio, keep_max, keep_min)


def num_visible(num_tokens: int, ratio: float, count: str = "keep") -> int:
    """Visible patches of a ``ratio`` mask over ``num_tokens``: ``int(L (1 - r))`` (``count="keep"``, MAE) or
    ``L - int(r L)`` (``count="mask"``, CroCo ``RandomMask``)."""
    if count not in MASK_COUNT_RULES:
        raise ValueError(f"count must be one of {MASK_COUNT_RULES}, got {count!r}")
    if count == "keep":
        return int(num_tokens * (1 - ratio))
    return num_tokens - int(ratio * num_tokens)


def random_masking(batch: int, grid: tuple[int, int] | int, ratio: float, device=None,
                   count: str = "keep") -> MaskOutput:
    """Per-sample uniform random masking: ``ids_shuffle = argsort(U[0, 1]^(B x L))``, the first
    :func:`num_visible` entries stay visible (MAE ``random_masking``; CroCo ``RandomMask`` with ``count="mask"``).

    ``grid``: ``(h, w)`` or a token count ``L`` (then the grid is ``(1, L)``). The keep count is the same for
    every image and known on the host (``keep_max == keep_min``), so token dropping never syncs.
    """
    if not 0.0 <= ratio < 1.0:
        raise ValueError(f"mask ratio must be in [0, 1), got {ratio}")
    if isinstance(grid, int):
        grid = (1, grid)
    L = grid[0] * grid[1]
    len_keep = num_visible(L, ratio, count)
    noise = torch.rand(batch, L, device=device)
    ids_shuffle = torch.argsort(noise, dim=1)  # ascending: small noise = keep
    keep = torch.full((batch,), len_keep, dtype=torch.long, device=device)
    r = torch.full((batch,), float(ratio), device=device)
    return mask_from_shuffle(ids_shuffle, keep, grid, r, len_keep, len_keep)
