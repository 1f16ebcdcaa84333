"""DAFormer decoder head (Hoyer et al., CVPR 2022; ``lhoyer/DAFormer`` ``daformer_head.py``).

Each encoder stage is embedded to ``embed_dim`` channels by a per-token linear layer (the "MLP"
embedding, no norm or activation), upsampled bilinearly to the stride-4 map and concatenated. A
depthwise-separable ASPP fuses the context: one 1x1 branch (conv-BN-ReLU) and one branch per further
dilation (3x3 depthwise conv-BN-ReLU then 1x1 conv-BN-ReLU), no image-pooling branch; the branches are
concatenated and a 3x3 conv-BN-ReLU bottleneck returns to ``embed_dim``. Dropout 0.1 and a 1x1 classifier
give logits at stride 4.

Initialisation (``init``): ``"mmcv"`` (default) follows the official code, where every conv-BN-ReLU is an mmcv
``ConvModule`` that initialises its conv with ``kaiming_normal_(mode="fan_out", nonlinearity="relu")`` and
zero bias, and its BN with weight 1 and bias 0; the embedding linears keep PyTorch's default and the
classifier (mmseg ``conv_seg``) is N(0, 0.01) with zero bias. ``"pytorch"`` keeps PyTorch's default init
for the convs (kaiming-uniform with a = sqrt(5) on fan_in: about 5x smaller ASPP/bottleneck weights and 13x
larger depthwise ones). The head trains from scratch in every UDA method, so the default matters.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["DAFormerHead", "DepthwiseSeparableASPP", "HEAD_INITS"]

#: initialisation schemes of the conv-BN-ReLU units (see the module docstring)
HEAD_INITS = ("mmcv", "pytorch")


def _conv_bn_relu(cin: int, cout: int, k: int, dilation: int = 1, groups: int = 1) -> nn.Sequential:
    pad = dilation * (k // 2)
    return nn.Sequential(nn.Conv2d(cin, cout, k, padding=pad, dilation=dilation, groups=groups, bias=False),
                         nn.BatchNorm2d(cout), nn.ReLU(inplace=True))


def _mmcv_conv_module_init(m: nn.Module) -> None:
    """mmcv ``ConvModule.init_weights`` for a ReLU unit: kaiming-normal (fan_out) conv, BN weight 1 / bias 0."""
    if isinstance(m, nn.Conv2d):
        nn.init.kaiming_normal_(m.weight, a=0, mode="fan_out", nonlinearity="relu")
        if m.bias is not None:
            nn.init.zeros_(m.bias)
    elif isinstance(m, nn.modules.batchnorm._BatchNorm):
        nn.init.ones_(m.weight)
        nn.init.zeros_(m.bias)


class DepthwiseSeparableASPP(nn.Module):
    """ASPP with depthwise-separable dilated branches and a 3x3 bottleneck (no pooling branch)."""

    def __init__(self, in_channels: int, channels: int, dilations: Sequence[int] = (1, 6, 12, 18)) -> None:
        super().__init__()
        branches = []
        for d in dilations:
            if d == 1:
                branches.append(_conv_bn_relu(in_channels, channels, 1))
            else:
                branches.append(nn.Sequential(_conv_bn_relu(in_channels, in_channels, 3, d, groups=in_channels),
                                              _conv_bn_relu(in_channels, channels, 1)))
        self.branches = nn.ModuleList(branches)
        self.bottleneck = _conv_bn_relu(len(dilations) * channels, channels, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.bottleneck(torch.cat([b(x) for b in self.branches], dim=1))


class DAFormerHead(nn.Module):
    """Multi-level context-aware fusion decoder of DAFormer.

    Args:
        in_channels: channels of the encoder maps (MiT-B5: (64, 128, 320, 512); MiT-B0: (32, 64, 160, 256)).
        num_classes: output classes.
        embed_dim: width of the per-stage embeddings and of the fusion (256 in DAFormer; a smaller value
            suits small students).
        dilations: ASPP dilations.
        dropout: dropout before the classifier.
        init: ``"mmcv"`` (official ``ConvModule`` kaiming-normal fan_out init, default) or ``"pytorch"``
            (PyTorch's default conv init); see the module docstring.

    ``forward(features, image_size=None)``: logits ``(B, num_classes, H/4, W/4)`` (the size of the first
    map), or bilinearly resized to ``image_size`` when given.
    """

    compile_region = True  # ``compile: true`` compiles the head (vitlab.core.perf.compile_regions)

    def __init__(self, in_channels: Sequence[int], num_classes: int, embed_dim: int = 256,
                 dilations: Sequence[int] = (1, 6, 12, 18), dropout: float = 0.1, init: str = "mmcv") -> None:
        super().__init__()
        if init not in HEAD_INITS:
            raise ValueError(f"DAFormerHead: init must be one of {HEAD_INITS}, got {init!r}")
        self.in_channels = [int(c) for c in in_channels]
        self.embed = nn.ModuleList(nn.Linear(c, embed_dim) for c in self.in_channels)
        self.fuse = DepthwiseSeparableASPP(embed_dim * len(self.in_channels), embed_dim, dilations)
        self.dropout = nn.Dropout2d(dropout) if dropout > 0 else nn.Identity()
        self.classifier = nn.Conv2d(embed_dim, num_classes, 1)
        if init == "mmcv":
            self.fuse.apply(_mmcv_conv_module_init)
        nn.init.normal_(self.classifier.weight, 0.0, 0.01)
        nn.init.zeros_(self.classifier.bias)

    def forward(self, features: Sequence[torch.Tensor], image_size: Sequence[int] | None = None) -> torch.Tensor:
        if len(features) != len(self.embed):
            raise ValueError(f"DAFormerHead: expected {len(self.embed)} feature maps, got {len(features)}")
        size = features[0].shape[-2:]
        embedded = []
        for f, lin in zip(features, self.embed, strict=True):
            b, _, h, w = f.shape
            e = lin(f.flatten(2).transpose(1, 2)).transpose(1, 2).reshape(b, -1, h, w)
            if (h, w) != tuple(size):
                e = F.interpolate(e, size=size, mode="bilinear", align_corners=False)
            embedded.append(e)
        out = self.classifier(self.dropout(self.fuse(torch.cat(embedded, dim=1))))
        if image_size is not None and tuple(out.shape[-2:]) != tuple(image_size):
            out = F.interpolate(out, size=tuple(image_size), mode="bilinear", align_corners=False)
        return out
