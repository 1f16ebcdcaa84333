"""Tensor → uint8 picture helpers for prediction logging (the colour maps live in ``data.colormaps``)."""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

from vitlab.core.data.colormaps import colorize
from vitlab.core.data.colormaps import colorize_labels as _colorize_labels
from vitlab.core.data.constants import IGNORE_INDEX, denormalize_image


def to_uint8_image(image: Tensor, normalized: bool = True) -> np.ndarray:
    """(3, H, W) image, ImageNet-normalised (or in [0, 1]) → (H, W, 3) uint8."""
    x = image.detach().float().cpu()
    if normalized:
        x = denormalize_image(x)
    return (x.clamp(0, 1) * 255).round().to(torch.uint8).permute(1, 2, 0).numpy()


def colorize_depth(depth: Tensor, vmin: float | None = None, vmax: float | None = None) -> np.ndarray:
    """(H, W) depth or disparity → (H, W, 3) uint8; invalid (+inf/nan) pixels are black."""
    return colorize(depth.detach().float().cpu().numpy(), vmin=vmin, vmax=vmax)


def colorize_labels(labels: Tensor, num_classes: int, ignore_index: int = IGNORE_INDEX) -> np.ndarray:
    """(H, W) class ids → (H, W, 3) uint8 with a fixed palette; ``ignore_index`` is black."""
    return _colorize_labels(labels.detach().cpu().numpy(), num_classes, ignore_index=ignore_index)


def panel(images: list[np.ndarray], gap: int = 2) -> np.ndarray:
    """Side-by-side row of equally tall (H, W, 3) uint8 images separated by white gaps."""
    h = max(im.shape[0] for im in images)
    parts = []
    for k, im in enumerate(images):
        if im.shape[0] != h:
            raise ValueError(f"panel: image {k} is {im.shape[0]} px tall, expected {h}")
        parts.append(im)
        if k < len(images) - 1:
            parts.append(np.full((h, gap, 3), 255, np.uint8))
    return np.concatenate(parts, axis=1)
