"""Simple dense heads on ViT feature maps, after SETR (Zheng et al., "Rethinking Semantic Segmentation from a
Sequence-to-Sequence Perspective with Transformers", CVPR 2021; `fudan-zvg/SETR`).

* :class:`LinearHead` - SETR-Naive / linear probe: 1x1 conv(s) on the last (or concatenated) map, bilinear
  upsampling to the image size.
* :class:`ProgressiveUpsamplingHead` - SETR-PUP: ``[conv3x3 - norm - ReLU - bilinear x2] * n`` then a 1x1 conv.

Both take ``features: list[Tensor (B, C_i, h, w)]`` (e.g. ``ViT.forward_intermediates``) and ``image_size (H, W)``
and return ``(B, C, H, W)`` logits / raw values.
"""

from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F

__all__ = ["LinearHead", "ProgressiveUpsamplingHead", "make_norm2d"]


def make_norm2d(kind: str, channels: int) -> nn.Module:
    """``"bn"`` BatchNorm2d, ``"gn"`` GroupNorm (32 groups, or the largest divisor of ``channels`` below), ``"none"``."""
    if kind == "bn":
        return nn.BatchNorm2d(channels)
    if kind == "gn":
        groups = next(g for g in range(min(32, channels), 0, -1) if channels % g == 0)
        return nn.GroupNorm(groups, channels)
    if kind == "none":
        return nn.Identity()
    raise ValueError(f"unknown norm {kind!r}; use 'bn', 'gn' or 'none'")


def _select(features: list[torch.Tensor] | torch.Tensor, mode: str) -> torch.Tensor:
    if isinstance(features, torch.Tensor):
        return features
    if not features:
        raise ValueError("no feature maps given")
    if mode == "last":
        return features[-1]
    size = features[-1].shape[-2:]
    maps = [
        f if f.shape[-2:] == size else F.interpolate(f, size=size, mode="bilinear", align_corners=False)
        for f in features
    ]
    return torch.cat(maps, dim=1)


def _in_channels(in_dim: int | list[int], input: str) -> int:
    if input not in ("last", "concat"):
        raise ValueError(f"input must be 'last' or 'concat', got {input!r}")
    if isinstance(in_dim, int):
        return in_dim
    return sum(in_dim) if input == "concat" else int(in_dim[-1])


class LinearHead(nn.Module):
    """SETR-Naive / linear head.

    Args:
        in_dim: channels of the selected map; with ``input="concat"`` a list of per-map channels (or their sum).
        out_channels: classes or regression channels.
        input: ``"last"`` (default: last map only) or ``"concat"`` (all maps, resized to the last one's size and
            concatenated on channels).
        hidden_dim: ``None`` (default) = a single 1x1 conv (linear probe); an int = SETR-Naive
            ``conv1x1 -> norm -> ReLU -> conv1x1``.
        norm: norm of the hidden layer, ``"bn"`` (SETR's), ``"gn"`` or ``"none"``.
        dropout: dropout before the last conv (0.0; SETR uses 0.1).

    ``forward(features, image_size)`` -> ``(B, out_channels, H, W)`` (bilinear, ``align_corners=False``).
    """

    def __init__(
        self,
        in_dim: int | list[int],
        out_channels: int,
        input: str = "last",
        hidden_dim: int | None = None,
        norm: str = "bn",
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        cin = _in_channels(in_dim, input)
        self.input = input
        layers: list[nn.Module] = []
        if hidden_dim:
            layers += [
                nn.Conv2d(cin, hidden_dim, 1, bias=norm == "none"),
                make_norm2d(norm, hidden_dim),
                nn.ReLU(),
            ]
            cin = hidden_dim
        layers += [nn.Dropout2d(dropout) if dropout > 0 else nn.Identity(), nn.Conv2d(cin, out_channels, 1)]
        self.layers = nn.Sequential(*layers)

    def forward(
        self, features: list[torch.Tensor] | torch.Tensor, image_size: tuple[int, int]
    ) -> torch.Tensor:
        x = self.layers(_select(features, self.input))
        return F.interpolate(x, size=tuple(image_size), mode="bilinear", align_corners=False)


class ProgressiveUpsamplingHead(nn.Module):
    """SETR-PUP head: ``num_upsamples`` x (conv3x3 -> norm -> ReLU -> bilinear x2), then conv1x1 to ``out_channels``.

    Args:
        in_dim: input channels (list with ``input="concat"``, as :class:`LinearHead`).
        out_channels: output channels.
        num_upsamples: number of x2 stages; ``None`` = ``round(log2(patch_size))`` (16 -> 4, 8 -> 3, 14 -> 4).
        patch_size: backbone patch size (16), used for the default ``num_upsamples``.
        channels: width of the stages (256).
        norm: ``"bn"`` (SETR's SyncBN), ``"gn"`` or ``"none"``.
        input: ``"last"`` or ``"concat"``.

    ``forward(features, image_size)`` -> ``(B, out_channels, H, W)``; if ``2**num_upsamples * h`` differs from
    ``H`` (patch 14, or a custom ``num_upsamples``) the output is resized bilinearly to ``image_size``.
    """

    def __init__(
        self,
        in_dim: int | list[int],
        out_channels: int,
        num_upsamples: int | None = None,
        patch_size: int = 16,
        channels: int = 256,
        norm: str = "bn",
        input: str = "last",
    ) -> None:
        super().__init__()
        cin = _in_channels(in_dim, input)
        self.input = input
        n = int(round(math.log2(patch_size))) if num_upsamples is None else int(num_upsamples)
        if n < 0:
            raise ValueError(f"num_upsamples must be >= 0, got {n}")
        self.num_upsamples = n
        stages: list[nn.Module] = []
        for i in range(n):
            stages += [
                nn.Conv2d(cin if i == 0 else channels, channels, 3, padding=1, bias=norm == "none"),
                make_norm2d(norm, channels),
                nn.ReLU(),
                nn.Upsample(scale_factor=2, mode="bilinear", align_corners=False),
            ]
        self.stages = nn.Sequential(*stages)
        self.cls = nn.Conv2d(channels if n else cin, out_channels, 1)

    def forward(
        self, features: list[torch.Tensor] | torch.Tensor, image_size: tuple[int, int]
    ) -> torch.Tensor:
        x = self.cls(self.stages(_select(features, self.input)))
        if tuple(x.shape[-2:]) != tuple(image_size):
            x = F.interpolate(x, size=tuple(image_size), mode="bilinear", align_corners=False)
        return x
