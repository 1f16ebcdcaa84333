"""DPT dense-prediction head, as used by CroCo-Stereo.

Re-implementation of the DPT decoder (Ranftl et al., "Vision Transformers for Dense Prediction", `isl-org/DPT`)
in the configuration of CroCo-Stereo (`naver/croco` ``models/dpt_block.py``, ``DPTOutputAdapter``):

* per-hook post-processing of token maps ``(B, C_i, H/16, W/16)`` to ``layer_dims = (96, 192, 384, 768)``:
  hook 1: 1x1 conv + ConvTranspose(k4, s4) -> H/4; hook 2: 1x1 conv + ConvTranspose(k2, s2) -> H/8;
  hook 3: 1x1 conv -> H/16; hook 4: 1x1 conv + 3x3 stride-2 conv -> H/32;
* 3x3 convs without bias map every level to ``feature_dim = 256``;
* RefineNet fusion from coarse to fine: ``x = path + RCU1(skip)``; ``x = RCU2(x)``; bilinear x2
  (``align_corners=True``); 1x1 conv. A residual conv unit is ``x + conv(relu(conv(relu(x))))``;
* output head: conv3x3 256->128, bilinear x2 (``align_corners=True``), conv3x3 128->32, ReLU, conv1x1 32->C;
  no output activation.

Deviations / generalisations (documented choices):

* **Input sizes.** CroCo needs H, W multiples of 32 (its coarsest path, of size ``2*ceil(N/2)``, is added to a map of
  size N). Like DUSt3R's fix, the upsampled coarser path is cropped to the skip's size when larger (and bilinearly
  resized if ever smaller), so any multiple of the patch size works; for multiples of 32 the computation is exactly
  CroCo's.
* **Other patch sizes.** The post-processing factors follow the patch so that levels stay at strides 4/8/16/32 of
  the image: factor ``patch / stride`` (ConvTranspose k=s=f when f > 1; identity at 1; conv k=s+1, stride s,
  padding s//2 when f = 1/s, which is CroCo's 3x3 s2 for s = 2). Patch 8 gives (x2, x1, /2, /4). A patch that is not
  a power of two (14) keeps the patch-16 layout (x4, x2, x1, /2); the output (16 x grid) is then resized bilinearly
  to ``image_size``. Any final size mismatch is resolved the same way.
* The coarsest fusion block has no unused first residual unit (CroCo creates one it never calls), so DDP needs no
  ``find_unused_parameters``.
"""

from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F

__all__ = ["DPTHead", "ResidualConvUnit", "FusionBlock"]


class ResidualConvUnit(nn.Module):
    """``x + conv2(relu(conv1(relu(x))))`` with 3x3 convs (RefineNet / DPT residual conv unit, no norm)."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(channels, channels, 3, padding=1, bias=True)
        self.conv2 = nn.Conv2d(channels, channels, 3, padding=1, bias=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv2(F.relu(self.conv1(F.relu(x))))


def _match_size(x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    if tuple(x.shape[-2:]) == tuple(size):
        return x
    if x.shape[-2] >= size[0] and x.shape[-1] >= size[1]:
        return x[..., : size[0], : size[1]]  # DUSt3R-style crop of the 2*ceil(N/2) path
    return F.interpolate(x, size=size, mode="bilinear", align_corners=True)


class FusionBlock(nn.Module):
    """RefineNet fusion: ``x (+ RCU1(skip))`` -> RCU2 -> bilinear x2 (align_corners=True) -> 1x1 conv."""

    def __init__(self, channels: int, has_skip: bool = True) -> None:
        super().__init__()
        self.res1 = ResidualConvUnit(channels) if has_skip else None
        self.res2 = ResidualConvUnit(channels)
        self.out_conv = nn.Conv2d(channels, channels, 1, bias=True)

    def forward(self, x: torch.Tensor, skip: torch.Tensor | None = None) -> torch.Tensor:
        if skip is not None:
            if self.res1 is None:
                raise ValueError("this fusion block was built without a skip input")
            x = _match_size(x, skip.shape[-2:]) + self.res1(skip)
        x = self.res2(x)
        x = F.interpolate(x, scale_factor=2, mode="bilinear", align_corners=True)
        return self.out_conv(x)


def _resample(channels: int, factor: float) -> nn.Module:
    if factor == 1:
        return nn.Identity()
    if factor > 1:
        f = int(round(factor))
        return nn.ConvTranspose2d(channels, channels, kernel_size=f, stride=f, padding=0, bias=True)
    s = int(round(1 / factor))
    return nn.Conv2d(channels, channels, kernel_size=s + 1, stride=s, padding=s // 2, bias=True)


class DPTHead(nn.Module):
    """DPT head (CroCo-Stereo configuration) over 4 ViT feature maps.

    Args:
        in_dims: channels of each of the 4 inputs (an int is repeated).
        out_channels: output channels C (CroCo-Stereo: 2 = disparity + confidence).
        layer_dims: per-level post-processing widths ((96, 192, 384, 768)).
        feature_dim: fusion width (256).
        last_dim: width before the final 1x1 conv (32).
        patch_size: backbone patch size (16); sets the post-processing factors (module docstring).
        fp32_output: run the output block (the last three convolutions, at full resolution) in fp32 with
            autocast off, so a regression output (disparity, depth) is not rounded to bf16 (8 mantissa bits:
            0.5 px steps at a disparity of 100) under bf16-mixed (False; regression models set it).

    ``forward(features, image_size, return_features=False)``: ``features`` = 4 tensors ordered shallow -> deep,
    each ``(B, C_i, h, w)`` with ``(h, w) = image_size / patch_size`` or tokens ``(B, h*w, C_i)`` (reshaped, no
    prefix tokens); ``image_size = (H, W)``. Returns ``(B, C, H, W)`` (raw, no activation), plus the finest fused
    feature map ``(B, feature_dim, H/2, W/2)`` when ``return_features``.
    """

    def __init__(
        self,
        in_dims: int | list[int],
        out_channels: int,
        layer_dims: tuple[int, ...] | list[int] = (96, 192, 384, 768),
        feature_dim: int = 256,
        last_dim: int = 32,
        patch_size: int = 16,
        fp32_output: bool = False,
    ) -> None:
        super().__init__()
        self.fp32_output = bool(fp32_output)
        in_dims = [int(in_dims)] * 4 if isinstance(in_dims, int) else [int(d) for d in in_dims]
        layer_dims = [int(d) for d in layer_dims]
        if len(in_dims) != 4 or len(layer_dims) != 4:
            raise ValueError(f"DPTHead needs 4 hooks: got in_dims={in_dims}, layer_dims={layer_dims}")
        self.in_dims = in_dims
        self.out_channels = out_channels
        self.patch_size = int(patch_size)
        log_p = math.log2(self.patch_size)
        if self.patch_size >= 4 and log_p == int(log_p):
            self.scale_factors = [self.patch_size / s for s in (4, 8, 16, 32)]
        else:
            self.scale_factors = [4.0, 2.0, 1.0, 0.5]
        self.act_postprocess = nn.ModuleList(
            nn.Sequential(nn.Conv2d(cin, cl, 1), _resample(cl, f))
            for cin, cl, f in zip(in_dims, layer_dims, self.scale_factors)
        )
        self.layer_rn = nn.ModuleList(
            nn.Conv2d(cl, feature_dim, 3, padding=1, bias=False) for cl in layer_dims
        )
        # refinenet[0] is the finest level, refinenet[3] the coarsest (no skip input)
        self.refinenet = nn.ModuleList(FusionBlock(feature_dim, has_skip=i < 3) for i in range(4))
        self.head = nn.Sequential(
            nn.Conv2d(feature_dim, feature_dim // 2, 3, padding=1),
            nn.Upsample(scale_factor=2, mode="bilinear", align_corners=True),
            nn.Conv2d(feature_dim // 2, last_dim, 3, padding=1),
            nn.ReLU(),
            nn.Conv2d(last_dim, out_channels, 1),
        )

    def _to_map(self, f: torch.Tensor, i: int, grid: tuple[int, int]) -> torch.Tensor:
        if f.ndim == 3:
            B, N, C = f.shape
            if N != grid[0] * grid[1]:
                raise ValueError(
                    f"DPTHead feature {i}: {N} tokens do not form the {grid[0]}x{grid[1]} grid of the image "
                    f"(patch {self.patch_size}); remove prefix tokens"
                )
            f = f.transpose(1, 2).reshape(B, C, grid[0], grid[1])
        if f.ndim != 4 or f.shape[1] != self.in_dims[i]:
            raise ValueError(
                f"DPTHead feature {i}: expected (B, {self.in_dims[i]}, h, w), got {tuple(f.shape)}"
            )
        return f

    def forward(
        self, features: list[torch.Tensor], image_size: tuple[int, int], return_features: bool = False
    ) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        if len(features) != 4:
            raise ValueError(f"DPTHead expects 4 feature maps, got {len(features)}")
        H, W = int(image_size[0]), int(image_size[1])
        grid = (H // self.patch_size, W // self.patch_size)
        layers = [self.act_postprocess[i](self._to_map(f, i, grid)) for i, f in enumerate(features)]
        layers = [rn(x) for rn, x in zip(self.layer_rn, layers)]
        path = self.refinenet[3](layers[3])
        for i in (2, 1, 0):
            path = self.refinenet[i](path, layers[i])
        if self.fp32_output:
            with torch.autocast(path.device.type, enabled=False):
                out = self.head(path.float())
        else:
            out = self.head(path)
        if tuple(out.shape[-2:]) != (H, W):
            out = F.interpolate(out, size=(H, W), mode="bilinear", align_corners=False)
        return (out, path) if return_features else out
