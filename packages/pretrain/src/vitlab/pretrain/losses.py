"""Reconstruction targets and losses of MAE and SimMIM (re-implemented from the official recipes [code]).

Patchify, the norm-pix target and the masked-patch MSE live in core (:mod:`vitlab.core.backbones.patches`,
shared with stereo) and are re-exported here; the SimMIM pixel L1 is this package's own.
"""

from __future__ import annotations

from torch import Tensor

from vitlab.core.backbones import masked_mse, norm_pix_target, patchify, unpatchify

__all__ = ["patchify", "unpatchify", "norm_pix_target", "masked_mse", "masked_l1"]


def masked_l1(pred: Tensor, target: Tensor, pixel_mask: Tensor, channels: int | None = None) -> Tensor:
    """SimMIM loss: ``sum(|x - x_hat| * M) / (sum(M) + 1e-5) / C`` with ``M`` a ``(B, 1, H, W)`` pixel mask."""
    c = channels if channels is not None else pred.shape[1]
    diff = (pred.float() - target.float()).abs() * pixel_mask
    return diff.sum() / (pixel_mask.sum() + 1e-5) / c
