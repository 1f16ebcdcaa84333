"""The tensor operations of one DACS/DAFormer/MIC iteration, as pure functions (all on the device).

Each follows the official code (``lhoyer/DAFormer`` ``mmseg/models/uda/dacs.py``,
``mmseg/models/utils/dacs_transforms.py``, ``mmseg/models/utils/dacs_transforms.py::denorm``;
``lhoyer/MIC`` ``seg/mmseg/models/utils/masking_transforms.py``) and none forces a host synchronisation:
ClassMix picks its classes with tensor ops instead of ``torch.unique``, the feature-distance mean divides by
the mask sum instead of boolean indexing, and the pseudo-label quality stays a 0-d tensor.
"""

from __future__ import annotations

import random

import kornia
import torch
import torch.nn.functional as F
from torch import Tensor

from vitlab.core.data import IGNORE_INDEX, denormalize_image, normalize_image

__all__ = [
    "ce_loss",
    "class_mix_masks",
    "crop_pseudo_weight",
    "denormalize",
    "downscale_label_ratio",
    "masked_feature_distance",
    "mic_mask",
    "mix",
    "pseudo_label",
    "renormalize",
    "strong_transform",
]


def ce_loss(logits: Tensor, target: Tensor, weight: Tensor | None = None,
            ignore_index: int = IGNORE_INDEX) -> Tensor:
    """mmseg ``CrossEntropyLoss``: logits resized (bilinear) to the label size, per-pixel CE (0 on ignored
    pixels), optional pixel weights, then a plain mean over **all** B*H*W pixels (ignored ones included)."""
    if logits.shape[-2:] != target.shape[-2:]:
        logits = F.interpolate(logits, size=target.shape[-2:], mode="bilinear", align_corners=False)
    loss = F.cross_entropy(logits.float(), target, ignore_index=ignore_index, reduction="none")
    if weight is not None:
        loss = loss * weight
    return loss.mean()


@torch.no_grad()
def pseudo_label(logits: Tensor, threshold: float = 0.968) -> tuple[Tensor, Tensor, Tensor]:
    """Teacher logits -> (hard labels (B,H,W), max probability (B,H,W), quality weight (B,H,W)).

    DACS quality: **one scalar for the batch**, the fraction of all B*H*W pixels whose max probability is
    at least ``threshold``; every pixel of the batch gets it.
    """
    prob, label = torch.softmax(logits.float(), dim=1).max(dim=1)
    q = (prob >= threshold).float().mean()
    return label, prob, q.expand_as(prob).clone()


def crop_pseudo_weight(weight: Tensor, top: int = 15, bottom: int = 120) -> Tensor:
    """DAFormer "crop PL": zero pseudo-label weights of the top ``top`` and bottom ``bottom`` rows."""
    w = weight.clone()
    if top > 0:
        w[:, :top] = 0
    if bottom > 0:
        w[:, -bottom:] = 0
    return w


def class_mix_masks(labels: Tensor, num_classes: int, faithful: bool = True,
                    generator: torch.Generator | None = None) -> Tensor:
    """ClassMix masks (B, 1, H, W) in {0, 1} from source labels (B, H, W).

    For every image, ``ceil(n / 2)`` classes are drawn at random without replacement from a candidate set of
    ``n`` classes and the mask is 1 where the image's label is one of them. ``faithful=True`` reproduces DACS:
    the candidates are the classes present anywhere in the **batch**, 255 included (``torch.unique(labels)``
    over the whole batch); ``faithful=False`` uses each image's own classes without 255.
    """
    b = labels.shape[0]
    k = num_classes + 1  # slot num_classes stands for the ignore label
    lab = torch.where(labels == IGNORE_INDEX, torch.full_like(labels, num_classes), labels).clamp(0, num_classes)
    onehot = torch.zeros(b, k, device=labels.device, dtype=torch.bool)
    onehot.scatter_(1, lab.flatten(1), True)
    if faithful:
        present = onehot.any(0, keepdim=True).expand(b, k)
    else:
        present = onehot.clone()
        present[:, num_classes] = False
    n = present.sum(1, keepdim=True)
    n_pick = (n + n % 2) // 2
    scores = torch.rand(b, k, device=labels.device, generator=generator)
    scores = torch.where(present, scores, torch.full_like(scores, 2.0))  # absent classes rank last
    rank = scores.argsort(dim=1).argsort(dim=1)
    chosen = present & (rank < n_pick)
    mask = torch.gather(chosen, 1, lab.flatten(1)).view_as(labels)
    return mask[:, None].float()


def mix(mask: Tensor, source: Tensor, target: Tensor) -> Tensor:
    """``mask * source + (1 - mask) * target``; mask (B,1,H,W), inputs (B,C,H,W) or (B,H,W)."""
    m = mask if source.ndim == 4 else mask[:, 0]
    out = m * source.to(m.dtype) + (1 - m) * target.to(m.dtype)
    return out.to(source.dtype) if not source.is_floating_point() else out


denormalize = denormalize_image  # the strong transform works on [0, 1] images
renormalize = normalize_image


def blur_kernel_size(size: int) -> int:
    """DACS ``gaussian_blur``: the odd size near ``0.1 * size`` (51 at 512)."""
    c = -(-size // 10)  # ceil(0.1 * size) for integer sizes
    return int(c - 0.5 + c % 2)


def strong_transform(image: Tensor, color_jitter_p: float = 0.2, color_jitter_s: float = 0.2,
                     blur: bool = True, rng: random.Random | None = None) -> Tensor:
    """DACS strong augmentation of a normalised batch, with kornia on its device.

    One uniform draw each per call (so per iteration): colour jitter (brightness, contrast, saturation, hue
    all ``color_jitter_s``; kornia samples per-image factors) when ``u_cj > color_jitter_p`` (probability 0.8)
    on the de-normalised [0, 1] image; Gaussian blur when ``u_b > 0.5`` with sigma ~ U(0.15, 1.15) and an odd
    kernel of about a tenth of the image side.
    """
    rng = rng or random
    u_cj, u_b = rng.uniform(0, 1), rng.uniform(0, 1)
    if u_cj > color_jitter_p:
        s = color_jitter_s
        jitter = kornia.augmentation.ColorJitter(brightness=s, contrast=s, saturation=s, hue=s, p=1.0)
        image = renormalize(jitter(denormalize(image).clamp(0, 1)))
    if blur and u_b > 0.5:
        sigma = rng.uniform(0.15, 1.15)
        ky, kx = blur_kernel_size(image.shape[-2]), blur_kernel_size(image.shape[-1])
        image = kornia.filters.gaussian_blur2d(image, (max(ky, 1), max(kx, 1)), (sigma, sigma))
    return image


def downscale_label_ratio(labels: Tensor, scale: int, min_ratio: float = 0.75, num_classes: int = 19,
                          ignore_index: int = IGNORE_INDEX) -> Tensor:
    """(B, H, W) labels -> (B, H/scale, W/scale): the majority class of each ``scale x scale`` window when it
    covers at least ``min_ratio`` of it (ignore counted as its own class), else ``ignore_index``."""
    lab = torch.where(labels == ignore_index, torch.full_like(labels, num_classes), labels)
    onehot = F.one_hot(lab, num_classes + 1).permute(0, 3, 1, 2).float()
    ratio, out = F.avg_pool2d(onehot, kernel_size=scale).max(dim=1)
    out = torch.where(out == num_classes, torch.full_like(out, ignore_index), out)
    return torch.where(ratio < min_ratio, torch.full_like(out, ignore_index), out)


def masked_feature_distance(feat: Tensor, ref: Tensor, mask: Tensor) -> Tensor:
    """Mean over masked cells of the per-cell L2 distance between (B, C, h, w) features; 0 for an empty mask
    (the official boolean indexing would give NaN there)."""
    d = torch.linalg.vector_norm(feat.float() - ref.float(), dim=1)
    m = mask.float()
    return (d * m).sum() / m.sum().clamp(min=1.0)


def mic_mask(shape: tuple[int, ...], block_size: int = 64, ratio: float = 0.7, device=None,
             generator: torch.Generator | None = None) -> Tensor:
    """MIC block mask (B, 1, H, W): a ``round(H/block) x round(W/block)`` grid, each cell kept (1) when
    ``U(0, 1) > ratio``, upsampled nearest to H x W."""
    b, _, h, w = shape
    grid = (max(round(h / block_size), 1), max(round(w / block_size), 1))
    keep = (torch.rand(b, 1, *grid, device=device, generator=generator) > ratio).float()
    return F.interpolate(keep, size=(h, w), mode="nearest")
