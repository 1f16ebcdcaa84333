"""Masking strategies for masked image modelling, shared by every method in this package.

A mask generator is a plain configurable object: ``gen(batch_size, grid, device, patch_size, tokens, epoch)``
returns a :class:`MaskOutput` that serves both encoder modes:

* *drop-masked* encoders (MAE, SBAM) use ``ids_keep`` / ``ids_restore`` (per-sample argsort, MAE
  ``random_masking``);
* *mask-token* encoders (SimMIM, SG-MIM, noise-in-encoder) use the binary ``mask`` (1 = masked).

Every generator fills all fields, so any strategy plugs into any method (e.g. block masks for MAE,
salience masks for SimMIM). :class:`MaskOutput`, :func:`mask_from_shuffle` and the uniform random law live in
core (:mod:`vitlab.core.backbones.patches`, shared with stereo) and are re-exported here.

Sources: MAE (He et al. 2022, `facebookresearch/mae` ``models_mae.random_masking``) [code]; SimMIM (Xie et al.
2022, `microsoft/SimMIM` ``MaskGenerator``) [code]; SBAM/AMR (Choi et al., ECCV 2024, `doihye/SBAM`
``saliency_guided_masking``) [code], with the [inferred] parts named in :class:`SalienceMask`.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from vitlab.core.backbones import MASK_COUNT_RULES, MaskOutput, mask_from_shuffle, random_masking

__all__ = [
    "MaskOutput",
    "MaskGenerator",
    "RandomPatchMask",
    "BlockRandomMask",
    "SalienceMask",
    "ComplementaryMask",
    "salience_scores",
    "mask_from_shuffle",
]


def _mask_from_binary(mask: Tensor, grid: tuple[int, int], ratio: Tensor, keep: int | None = None) -> MaskOutput:
    """Orderings for a given binary mask: visible patches first (in raster order), then masked ones.

    ``keep``: the number of visible patches when the generator knows it is the same for every image."""
    ids_shuffle = torch.argsort(mask, dim=1, stable=True)
    len_keep = (mask < 0.5).sum(1)
    return mask_from_shuffle(ids_shuffle, len_keep, grid, ratio, keep, keep)


class MaskGenerator:
    """Base class: subclasses implement :meth:`__call__`.

    ``needs_tokens`` tells the module to pass ``tokens`` = patch embedding + positions (no class token).
    """

    needs_tokens: bool = False

    def __call__(
        self,
        batch_size: int,
        grid: tuple[int, int],
        device: torch.device | str,
        patch_size: int = 16,
        tokens: Tensor | None = None,
        epoch: int = 0,
    ) -> MaskOutput:
        raise NotImplementedError


class RandomPatchMask(MaskGenerator):
    """Per-sample uniform random masking (core :func:`~vitlab.core.backbones.patches.random_masking`).

    MAE [code]: ``len_keep = int(L (1 - r))``, ``ids_shuffle = argsort(U[0,1])``. CroCo's ``RandomMask`` [code]
    masks ``int(r L)`` patches instead (``count="mask"``); the two differ by one patch when ``r L`` is not an
    integer.

    Args:
        mask_ratio: fraction of patches removed (0.75, MAE; CroCo 0.9).
        count: ``"keep"`` (MAE rounding, default) or ``"mask"`` (CroCo rounding).
    """

    def __init__(self, mask_ratio: float = 0.75, count: str = "keep") -> None:
        if not 0.0 <= mask_ratio < 1.0:
            raise ValueError(f"RandomPatchMask: mask_ratio must be in [0, 1), got {mask_ratio}")
        if count not in MASK_COUNT_RULES:
            raise ValueError(f"RandomPatchMask: count must be one of {MASK_COUNT_RULES}, got {count!r}")
        self.mask_ratio = float(mask_ratio)
        self.count = count

    def __call__(self, batch_size, grid, device, patch_size=16, tokens=None, epoch=0) -> MaskOutput:
        return random_masking(batch_size, grid, self.mask_ratio, device, count=self.count)


class BlockRandomMask(MaskGenerator):
    """SimMIM random block masking [code]: square cells of ``mask_patch_size`` px, ``ceil(cells * r)`` masked.

    The cell mask is upsampled to the model's patch grid (ViT/16 at 224 px: 7x7 cells of 32 px -> 14x14).
    SimMIM draws it in the data pipeline with numpy; here it is drawn per sample on the device, same law.

    Args:
        mask_patch_size: cell size in pixels (32); must be a multiple of the model patch size.
        mask_ratio: fraction of cells masked (0.6).
    """

    def __init__(self, mask_patch_size: int = 32, mask_ratio: float = 0.6) -> None:
        if not 0.0 <= mask_ratio < 1.0:
            raise ValueError(f"BlockRandomMask: mask_ratio must be in [0, 1), got {mask_ratio}")
        self.mask_patch_size = int(mask_patch_size)
        self.mask_ratio = float(mask_ratio)

    def __call__(self, batch_size, grid, device, patch_size=16, tokens=None, epoch=0) -> MaskOutput:
        if self.mask_patch_size % patch_size:
            raise ValueError(
                f"BlockRandomMask: mask_patch_size {self.mask_patch_size} must be a multiple of the model "
                f"patch size {patch_size}"
            )
        s = self.mask_patch_size // patch_size
        h, w = grid
        if h % s or w % s:
            raise ValueError(
                f"BlockRandomMask: patch grid {h}x{w} is not divisible into {self.mask_patch_size}-px cells "
                f"(input size must be a multiple of {self.mask_patch_size})"
            )
        ch, cw = h // s, w // s
        cells = ch * cw
        count = int(math.ceil(cells * self.mask_ratio))
        order = torch.argsort(torch.rand(batch_size, cells, device=device), dim=1)
        cell_mask = torch.zeros(batch_size, cells, device=device)
        cell_mask.scatter_(1, order[:, :count], 1.0)
        mask = cell_mask.reshape(batch_size, ch, cw).repeat_interleave(s, 1).repeat_interleave(s, 2)
        ratio = torch.full((batch_size,), count / cells, device=device)
        return _mask_from_binary(mask.reshape(batch_size, -1), grid, ratio, keep=h * w - count * s * s)


def salience_scores(tokens: Tensor, eps: float = 1e-6) -> Tensor:
    """SBAM salience [code]: column sums of ``softmax_j(x x^T)`` on patch embeddings, min-max normalised per image.

    ``tokens``: ``(B, L, D)`` patch embedding + positions. Computed in fp32 (x x^T overflows fp16 [inferred]);
    no Q/K projection and no 1/sqrt(D) scaling, as in the official code. Returns ``(B, L)`` in [0, 1].
    ``eps`` is added to the min-max denominator (the official code has none, ``eps=0``): when the self-affinity
    softmax is one-hot every column sum is 1 and the official code computes 0/0 = NaN.
    """
    x = tokens.detach().float()
    with torch.autocast(device_type=x.device.type, enabled=False):
        attn = torch.softmax(x @ x.transpose(1, 2), dim=-1)
        s = attn.sum(dim=1)  # column sums: attention each token receives = its "outgoing" salience
        lo = s.min(dim=1, keepdim=True).values
        hi = s.max(dim=1, keepdim=True).values
        return (s - lo) / (hi - lo + eps)


class SalienceMask(MaskGenerator):
    """SBAM salience-guided masking with the adaptive masking ratio (AMR).

    [code] (`doihye/SBAM`): salience from :func:`salience_scores`; ``score = s + U(0, noise_amp)``; the
    lowest scores are kept, so the most salient tokens are masked first; AMR counts salient tokens
    ``y_b = #{s_bj > delta}`` and sets ``r = r_base - v + 2 v y / L`` (so ``r`` stays in ``[r_base - v, r_base + v]``),
    with ``y`` averaged over the batch (one ratio per batch) in the official code.

    [inferred]: ``delta = 0.5`` and ``variation = 0.1`` (not in the official code; values of a third-party
    re-use); ``per_batch_ratio=False`` gives every image its own ratio as the paper describes (drop-masked
    encoders then pad ``ids_keep`` and mask the padding in attention); ``start_epoch``: plain random masking
    at ``r_base`` before that epoch, since salience from an untrained patch embedding is meaningless (the
    official run resumes from a 100-epoch MAE warm-up checkpoint).

    Degenerate salience (all column sums equal, e.g. a one-hot self-affinity softmax from huge token norms): the
    official code divides 0 by 0, so every score is NaN, no token counts as salient (ratio ``r_base - v``) and
    ``argsort`` of an all-NaN row keeps a fixed set of patches for every image. vitlab's default ``salience_eps``
    (1e-6) makes the salience 0 instead, so masking falls back to random masking at ``r_base - v``;
    ``salience_eps=0`` reproduces the official behaviour.

    Args:
        mask_ratio: base ratio ``r_base`` (0.75).
        adaptive: use AMR; False = SBM with the fixed ratio.
        delta: salience threshold for AMR counting (0.5).
        variation: AMR half-range ``v`` (0.1).
        noise_amp: amplitude of the uniform noise added to the salience (0.5, ``torch.rand / 2``).
        per_batch_ratio: True = one ratio per batch (official code), False = one per image (paper).
        start_epoch: epochs of plain random masking first (0).
        salience_eps: added to the salience min-max denominator (1e-6; 0 = official, see above).
    """

    needs_tokens = True

    def __init__(
        self,
        mask_ratio: float = 0.75,
        adaptive: bool = True,
        delta: float = 0.5,
        variation: float = 0.1,
        noise_amp: float = 0.5,
        per_batch_ratio: bool = True,
        start_epoch: int = 0,
        salience_eps: float = 1e-6,
    ) -> None:
        if not (0.0 <= mask_ratio - variation and mask_ratio + variation < 1.0):
            raise ValueError(
                f"SalienceMask: mask_ratio +- variation must stay in [0, 1), got {mask_ratio} +- {variation}"
            )
        self.mask_ratio = float(mask_ratio)
        self.adaptive = bool(adaptive)
        self.delta = float(delta)
        self.variation = float(variation) if adaptive else 0.0
        self.noise_amp = float(noise_amp)
        self.per_batch_ratio = bool(per_batch_ratio)
        self.start_epoch = int(start_epoch)
        self.salience_eps = float(salience_eps)
        self._random = RandomPatchMask(mask_ratio)

    def ratios(self, salience: Tensor) -> Tensor:
        """AMR masking ratio per image ``(B,)`` from normalised salience ``(B, L)``."""
        B, L = salience.shape
        if not self.adaptive:
            return torch.full((B,), self.mask_ratio, device=salience.device)
        y = (salience > self.delta).float().sum(1) / L
        if self.per_batch_ratio:
            y = y.mean().expand(B)
        return self.mask_ratio - self.variation + 2 * self.variation * y

    def __call__(self, batch_size, grid, device, patch_size=16, tokens=None, epoch=0) -> MaskOutput:
        if epoch < self.start_epoch:
            return self._random(batch_size, grid, device, patch_size)
        if tokens is None:
            raise ValueError("SalienceMask needs the patch tokens (patch embedding + positions)")
        B, L, _ = tokens.shape
        sal = salience_scores(tokens, self.salience_eps)
        ratio = self.ratios(sal)
        len_keep = (L * (1 - ratio)).long()  # int(L * (1 - r)) as MAE
        # host-known bounds from r in [r_base - v, r_base + v]: a static ids_keep width, no host sync
        hi = min(L, int(L * (1 - (self.mask_ratio - self.variation))))
        lo = max(0, int(L * (1 - (self.mask_ratio + self.variation))))
        len_keep = len_keep.clamp(lo, hi)
        score = sal + torch.rand_like(sal) * self.noise_amp
        ids_shuffle = torch.argsort(score, dim=1)  # keep the lowest, mask the most salient
        return mask_from_shuffle(ids_shuffle, len_keep, grid, ratio, hi, lo)


class ComplementaryMask:
    """SG-MIM selective masking [code]: the structure (depth) stream keeps exactly the image-masked patches.

    ``keep(mask)`` returns the ``(B, L)`` float keep-weight of the depth stream: ``w = mask`` (1 where the image
    is masked, 0 where it is visible); ``visible(mask)`` is its complement, where the depth loss applies.
    """

    @staticmethod
    def keep(mask: Tensor) -> Tensor:
        return mask

    @staticmethod
    def visible(mask: Tensor) -> Tensor:
        return 1.0 - mask
