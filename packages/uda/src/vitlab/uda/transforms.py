"""The tensor operations of one DACS/DAFormer/MIC iteration, as pure functions (all on the device).

Each follows the official code (``lhoyer/DAFormer`` ``mmseg/models/uda/dacs.py``,
``mmseg/models/utils/dacs_transforms.py``, ``mmseg/models/utils/dacs_transforms.py::denorm``;
``lhoyer/MIC`` ``seg/mmseg/models/utils/masking_transforms.py``) and none forces a host synchronisation:
ClassMix picks its classes with tensor ops instead of ``torch.unique``, the feature-distance mean divides by
the mask sum instead of boolean indexing, and the pseudo-label quality stays a 0-d tensor.
"""

from __future__ import annotations

import math
import random

import kornia.enhance as KE
import torch
import torch.nn.functional as F
from torch import Tensor

from vitlab.core.data import IGNORE_INDEX, denormalize_image, normalize_image

__all__ = [
    "JITTER_LAWS",
    "apply_strong",
    "ce_loss",
    "class_mix_masks",
    "crop_pseudo_weight",
    "denormalize",
    "downscale_label_ratio",
    "gaussian_blur",
    "masked_feature_distance",
    "mic_mask",
    "mix",
    "pseudo_label",
    "renormalize",
    "strong_params",
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
        w[:, :top].zero_()  # in place on the view: `= 0` would make a tensor from the Python 0
    if bottom > 0:
        w[:, -bottom:].zero_()
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


#: colour-jitter laws of :func:`strong_transform` (see :func:`apply_strong`)
JITTER_LAWS = ("kornia_0.5", "torchvision")


def _gaussian_kernel(k: int, sigma: Tensor) -> Tensor:
    """(B, k) normalised 1-D Gaussians, one per sigma (kornia ``get_gaussian_kernel1d``)."""
    t = torch.arange(k, device=sigma.device, dtype=sigma.dtype) - k // 2
    w = torch.exp(-(t[None] ** 2) / (2 * sigma[:, None] ** 2))
    return w / w.sum(1, keepdim=True)


def gaussian_blur(image: Tensor, sigma: Tensor, kernel_size: tuple[int, int]) -> Tensor:
    """Gaussian blur of (B, C, H, W) with one ``sigma`` (B,) per image and a (ky, kx) odd kernel, reflect padding
    (kornia ``GaussianBlur2d`` as DACS calls it, done separably so no value is read on the host)."""
    b, c, h, w = image.shape
    y = image.reshape(1, b * c, h, w)
    sigma = sigma.to(image.dtype)
    for dim, k in ((2, kernel_size[0]), (3, kernel_size[1])):
        if k <= 1:
            continue
        r = k // 2
        wk = _gaussian_kernel(k, sigma).repeat_interleave(c, 0)  # (B*C, k)
        pad = (0, 0, r, r) if dim == 2 else (r, r, 0, 0)
        shape = (b * c, 1, k, 1) if dim == 2 else (b * c, 1, 1, k)
        y = F.conv2d(F.pad(y, pad, mode="reflect"), wk.reshape(shape), groups=b * c)
    return y.reshape(b, c, h, w)


def strong_params(batch: int, device, color_jitter_p: float = 0.2, color_jitter_s: float = 0.2, blur: bool = True,
                  rng: random.Random | None = None, per_image: bool = True,
                  generator: torch.Generator | None = None) -> dict:
    """Draw the parameters of one DACS strong augmentation of ``batch`` images.

    Host side (Python floats from ``rng``, no device read): one ``u_cj`` and one ``u_b`` per call; colour jitter
    when ``u_cj > color_jitter_p``, blur when ``blur and u_b > 0.5``. Device side (``generator``): per-image
    factors ``(B, 4)`` = brightness, contrast, saturation in ``U(max(0, 1 - s), 1 + s)`` and hue in ``U(-s, s)``
    (kornia 0.5.8 ``ColorJitter`` ranges; brightness capped at 2); the order of the four ops as a ``(B, 4)``
    permutation; the blur sigma ``U(0.15, 1.15)``.

    ``per_image=True`` (DACS mixed images): every image gets its own op order and blur sigma, as the official
    loop that augments one image per call. ``per_image=False`` (MIC's target augmentation, one call on the
    batch): one order and one sigma for the batch (factors stay per image, as kornia draws them).
    """
    rng = rng or random
    u_cj, u_b = rng.uniform(0, 1), rng.uniform(0, 1)
    s = float(color_jitter_s)
    bounds = ((max(0.0, 1 - s), min(2.0, 1 + s)), (max(0.0, 1 - s), 1 + s), (max(0.0, 1 - s), 1 + s), (-s, s))
    n = batch if per_image else 1
    u = torch.rand(batch, 4, device=device, generator=generator)
    factors = torch.stack([a + (b - a) * u[:, i] for i, (a, b) in enumerate(bounds)], dim=1)  # no host tensor
    order = torch.rand(n, 4, device=device, generator=generator).argsort(dim=1).expand(batch, 4)
    sigma = (0.15 + torch.rand(n, device=device, generator=generator)).expand(batch)
    return {"jitter": u_cj > color_jitter_p, "blur": bool(blur) and u_b > 0.5, "factors": factors,
            "order": order, "sigma": sigma}


def _contrast_0_5(x: Tensor, v: Tensor) -> Tensor:
    """kornia 0.5.8 ``adjust_contrast``: image b times ``v[b]``, clamped to [0, 1]. Written here because kornia
    >= 0.9.2 checks the factor on the host for CPU tensors (a read per call)."""
    return (x * v[:, None, None, None]).clamp(0, 1)


def _jitter_ops(law: str):
    if law == "kornia_0.5":  # kornia 0.5.8 ColorJitter (= today's ColorJiggle): the version DAFormer/MIC pin
        return (lambda x, v: KE.adjust_brightness(x, v - 1), _contrast_0_5, KE.adjust_saturation,
                lambda x, v: KE.adjust_hue(x, v * (2 * math.pi)))
    return (KE.adjust_brightness_accumulative, KE.adjust_contrast_with_mean_subtraction,
            KE.adjust_saturation_with_gray_subtraction, lambda x, v: KE.adjust_hue(x, v * (2 * math.pi)))


def apply_strong(image: Tensor, params: dict, jitter_law: str = "kornia_0.5") -> Tensor:
    """Apply :func:`strong_params` to a normalised batch: jitter on the de-normalised [0, 1] image, then blur.

    Every image runs its ops in its own order with ``torch.where`` over the four slots (16 batched op
    evaluations, no host read). ``jitter_law``: ``"kornia_0.5"`` (default, official: DAFormer and MIC pin
    kornia 0.5.8, whose ``ColorJitter`` adds ``brightness - 1``, multiplies by the contrast factor and scales
    the HSV saturation, each clamped to [0, 1]); ``"torchvision"`` (kornia >= 0.6 ``ColorJitter``: brightness
    multiplied, contrast and saturation blended with the mean / grey image), what the official code would
    run under a current kornia.
    """
    if jitter_law not in JITTER_LAWS:
        raise ValueError(f"strong transform: jitter_law must be one of {JITTER_LAWS}, got {jitter_law!r}")
    if params["jitter"]:
        ops = _jitter_ops(jitter_law)
        x = denormalize(image).clamp(0, 1)
        order, v = params["order"], params["factors"].to(x.dtype)
        for k in range(4):
            y = x
            for op, fn in enumerate(ops):
                y = torch.where((order[:, k] == op)[:, None, None, None], fn(x, v[:, op]), y)
            x = y
        image = renormalize(x.clamp(0, 1))
    if params["blur"]:
        ks = (blur_kernel_size(image.shape[-2]), blur_kernel_size(image.shape[-1]))
        image = gaussian_blur(image, params["sigma"], ks)
    return image


def strong_transform(image: Tensor, color_jitter_p: float = 0.2, color_jitter_s: float = 0.2,
                     blur: bool = True, rng: random.Random | None = None, per_image: bool = True,
                     generator: torch.Generator | None = None, jitter_law: str = "kornia_0.5") -> Tensor:
    """DACS strong augmentation of a normalised batch (``lhoyer/DAFormer`` ``dacs_transforms.py::
    strong_transform``): colour jitter with probability ``1 - color_jitter_p`` (0.8) and strength
    ``color_jitter_s`` (0.2), Gaussian blur with probability 0.5, sigma U(0.15, 1.15) and an odd kernel of about
    a tenth of the image side; one pair of draws per call, per-image factors drawn on the device
    (:func:`strong_params`, :func:`apply_strong`)."""
    params = strong_params(image.shape[0], image.device, color_jitter_p, color_jitter_s, blur, rng, per_image,
                           generator)
    return apply_strong(image, params, jitter_law)


def downscale_label_ratio(labels: Tensor, scale: int, min_ratio: float = 0.75, num_classes: int = 19,
                          ignore_index: int = IGNORE_INDEX) -> Tensor:
    """(B, H, W) labels -> (B, H/scale, W/scale): the majority class of each ``scale x scale`` window when it
    covers at least ``min_ratio`` of it (ignore counted as its own class), else ``ignore_index``."""
    lab = torch.where(labels == ignore_index, torch.full_like(labels, num_classes), labels)
    # F.one_hot reads min/max on the host (CPU) even with num_classes: compare with the class ids instead
    classes = torch.arange(num_classes + 1, device=lab.device).view(1, -1, 1, 1)
    onehot = (lab[:, None] == classes).float()
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
