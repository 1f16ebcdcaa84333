"""Epipolar correlation for the binocular ViT: matching evidence that exists before any training.

Not part of CroCo-Stereo (a vitlab addition, off by default; ``BinocularViT(corr_disparities=...)``).
CroCo-Stereo reads disparity out of RoPE cross-attention, which has to grow position-selective, content-matching
heads first; CroCo pre-training supplies them, and from random weights a few hundred (or thousand) CPU steps do
not: the CPU quickstart's output did not move when its right view was replaced by the left one. A Siamese
feature map correlated along the epipolar line (the cost volume of classical and CNN stereo, e.g. GC-Net,
StereoNet, RAFT-Stereo) matches identical content with identical features from the first step, so:

* a small shared conv stem (stride 4) maps each view to unit-norm features;
* ``cost[b, k, y, x] = scale * <f_left(y, x), f_right(y, x - k)>`` for ``k = 0 .. D/4 - 1`` (candidates whose
  right pixel leaves the frame are excluded);
* ``softmax`` over ``k`` -> expected disparity ``4 * E[k]`` (soft argmin), bilinearly upsampled: a coarse
  disparity the DPT output is added to (the ViT learns the residual: occlusions, texture-less areas, sub-pixel);
* the softmax volume, pooled onto the patch grid by a zero-initialised conv, is added to the left encoder tokens
  that enter the decoder, so the transformer sees the match distribution (at initialisation it sees nothing new).

Which parts follow which source: the cost volume and soft argmin are the standard construction named above; the
stem widths, the unit-norm features with a learned scale (init 10), the stride 4 and the two ways of feeding the
ViT are vitlab choices [inferred], documented at :class:`EpipolarCorrelation`.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = ["EpipolarCorrelation"]

#: default resolution of the correlation (input pixels per feature pixel)
CORR_STRIDE = 4
#: the strides the stem supports
CORR_STRIDES = (2, 4)


class EpipolarCorrelation(nn.Module):
    """Siamese stride-``s`` features, 1-D correlation over ``max_disparity`` px, soft-argmin disparity.

    Args:
        max_disparity: largest disparity (px, at the network's input resolution) the volume covers; a multiple of
            ``stride`` is used (``ceil(max_disparity / stride)`` candidates).
        dim: feature width of the stem (32).
        token_dim: width of the tokens the pooled volume is added to (the encoder width).
        patch_size: the ViT patch size (a multiple of ``stride``): the volume is pooled ``patch_size / stride``
            to one token.
        init_scale: initial value of the learned logit scale on the cosine correlation (10).
        stride: input pixels per correlation pixel, 4 (default) or 2. The DPT output is token-resolution
            (one token per 16 px), so detail finer than a token comes from the correlation alone: stride 2
            quadruples the volume's pixels and halves the candidate spacing, for images so small that a
            stride-4 map is only a few pixels wide (the same layers, one stem conv at stride 1 instead of 2,
            so the parameter names and counts do not change).

    ``forward(left, right) -> (coarse disparity (B, 1, H, W) px, token offsets (B, h*w, token_dim))``.
    """

    compile_region = True  # ``compile: true`` compiles it with the blocks (vitlab.core.perf.compile_regions)

    def __init__(self, max_disparity: int, dim: int = 32, token_dim: int = 128, patch_size: int = 16,
                 init_scale: float = 10.0, stride: int = CORR_STRIDE) -> None:
        super().__init__()
        if stride not in CORR_STRIDES:
            raise ValueError(f"corr_stride must be one of {CORR_STRIDES}, got {stride}")
        if max_disparity < stride:
            raise ValueError(f"corr_disparities must be >= {stride} px, got {max_disparity}")
        if patch_size % stride:
            raise ValueError(f"the correlation needs a patch size divisible by {stride}, got {patch_size}")
        self.stride = int(stride)
        self.num_candidates = -(-int(max_disparity) // stride)
        self.stem = nn.Sequential(
            nn.Conv2d(3, dim, 3, stride=2, padding=1), nn.GELU(),
            nn.Conv2d(dim, dim, 3, stride=stride // 2, padding=1), nn.GELU(),
            nn.Conv2d(dim, dim, 3, padding=1),
        )
        self.logit_scale = nn.Parameter(torch.tensor(float(init_scale)))
        k = patch_size // stride
        self.to_tokens = nn.Conv2d(self.num_candidates, token_dim, kernel_size=k, stride=k)
        nn.init.zeros_(self.to_tokens.weight)
        nn.init.zeros_(self.to_tokens.bias)

    def cost_volume(self, left: Tensor, right: Tensor) -> Tensor:
        """``(B, D/s, H/s, W/s)`` scaled cosine correlation; candidates leaving the frame are ``-inf``-like."""
        f = F.normalize(self.stem(torch.cat([left, right], dim=0)).float(), dim=1)
        fl, fr = f.chunk(2, dim=0)
        w = fl.shape[-1]
        vols = [F.pad((fl[..., k:] * fr[..., : w - k]).sum(1), (k, 0)) for k in range(min(self.num_candidates, w))]
        vols += [fl.new_zeros(fl[:, 0].shape)] * (self.num_candidates - len(vols))
        cost = torch.stack(vols, dim=1) * self.logit_scale.float()
        ks = torch.arange(self.num_candidates, device=f.device)
        outside = torch.arange(w, device=f.device)[None, :] < ks[:, None]  # (D, w): right pixel x - k < 0
        return cost.masked_fill(outside[:, None, :], -1e4)

    def forward(self, left: Tensor, right: Tensor) -> tuple[Tensor, Tensor]:
        prob = self.cost_volume(left, right).softmax(dim=1)
        ks = torch.arange(self.num_candidates, device=prob.device, dtype=prob.dtype)
        coarse = (prob * ks[:, None, None]).sum(1, keepdim=True) * self.stride
        coarse = F.interpolate(coarse, size=left.shape[-2:], mode="bilinear", align_corners=False)
        tokens = self.to_tokens(prob.to(self.to_tokens.weight.dtype)).flatten(2).transpose(1, 2)
        return coarse, tokens
