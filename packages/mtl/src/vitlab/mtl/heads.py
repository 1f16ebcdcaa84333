"""Per-task decoders of MTLoRA/TADFormer (`scale-lab/MTLoRA`, after MTI-Net's HRNet head).

Each task owns a **Downsampler** (one 1×1 convolution without bias per scale, mapping the backbone's stage widths,
[192, 384, 768, 768] for Swin-T, to HRNet-W18's [18, 36, 72, 144]) and a **HighResolutionHead**: every scale is
bilinearly upsampled to the finest one and concatenated (270 channels), then 1×1 conv (+bias) → BatchNorm →
ReLU → 1×1 conv (+bias) to the task's outputs; the result is bilinearly upsampled to the input size.
With Swin-T and the four PASCAL tasks (21 + 7 + 1 + 3 outputs) the four decoders hold 1,946,624 parameters.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = ["HRNET_W18_WIDTHS", "Downsampler", "HighResolutionHead", "TaskDecoder"]

HRNET_W18_WIDTHS = (18, 36, 72, 144)


class Downsampler(nn.Module):
    """1×1 convolutions (no bias) from each backbone stage width to the head width of that scale."""

    def __init__(self, in_channels: Sequence[int], out_channels: Sequence[int] = HRNET_W18_WIDTHS) -> None:
        super().__init__()
        if len(in_channels) != len(out_channels):
            raise ValueError(f"Downsampler: {len(in_channels)} input scales but {len(out_channels)} output widths")
        self.convs = nn.ModuleList(nn.Conv2d(i, o, 1, bias=False) for i, o in zip(in_channels, out_channels))

    def forward(self, feats: Sequence[Tensor]) -> list[Tensor]:
        return [conv(f) for conv, f in zip(self.convs, feats)]


class HighResolutionHead(nn.Module):
    """HRNet segmentation head: upsample to the finest scale, concat, 1×1 conv-BN-ReLU, 1×1 conv."""

    def __init__(self, in_channels: Sequence[int], out_channels: int, hidden: int | None = None) -> None:
        super().__init__()
        total = int(sum(in_channels))
        hidden = int(hidden or 4 * total)  # 1080 for W18 widths, as MTI-Net/MTLoRA
        self.fuse = nn.Sequential(nn.Conv2d(total, hidden, 1), nn.BatchNorm2d(hidden), nn.ReLU(inplace=True))
        self.classifier = nn.Conv2d(hidden, out_channels, 1)

    def forward(self, feats: Sequence[Tensor]) -> Tensor:
        size = feats[0].shape[-2:]
        x = torch.cat([feats[0]] + [F.interpolate(f, size=size, mode="bilinear", align_corners=False)
                                    for f in feats[1:]], dim=1)
        return self.classifier(self.fuse(x))


class TaskDecoder(nn.Module):
    """Downsampler + HighResolutionHead + bilinear upsampling to ``image_size``."""

    compile_region = True  # ``compile: true`` compiles each decoder (vitlab.core.perf.compile_regions)

    def __init__(self, in_channels: Sequence[int], out_channels: int,
                 widths: Sequence[int] = HRNET_W18_WIDTHS) -> None:
        super().__init__()
        self.downsampler = Downsampler(in_channels, widths)
        self.head = HighResolutionHead(widths, out_channels)

    def forward(self, feats: Sequence[Tensor], image_size: tuple[int, int]) -> Tensor:
        out = self.head(self.downsampler(feats))
        return F.interpolate(out, size=tuple(image_size), mode="bilinear", align_corners=False)
