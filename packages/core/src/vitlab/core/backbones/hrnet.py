"""HRNet feature extractor (Wang et al., "Deep High-Resolution Representation Learning", TPAMI 2020) on timm.

MTI-Net (Vandenhende et al., ECCV 2020) and the sequential cross-attention model (Kim et al., ICIP 2022) decode
the four parallel branches of HRNet-W18-small-v2: 18, 36, 72, 144 channels at strides 4, 8, 16, 32. timm's
``features_only`` model with ``feature_location=''`` returns exactly those branch outputs (no incre modules).
"""

from __future__ import annotations

import timm
from torch import Tensor, nn

__all__ = ["HRNetFeatures"]


class HRNetFeatures(nn.Module):
    """The four HRNet branch outputs, finest first.

    Args:
        name: timm HRNet variant (``hrnet_w18_small_v2``: ImageNet-pretrained in MTI-Net).
        pretrained: load timm's ImageNet weights (online).

    Attributes: ``out_channels`` ([18, 36, 72, 144] for W18) and ``strides`` ([4, 8, 16, 32]).

    ``compile: true`` compiles each of timm's ``HighResolutionModule`` (the parallel branches and their fusion,
    where almost all parameters are) as a region (:func:`vitlab.core.perf.compile_regions`), unless a larger
    region holds it (SCA's encoder); the stem and the transitions stay eager.
    """

    def __init__(self, name: str = "hrnet_w18_small_v2", pretrained: bool = False) -> None:
        super().__init__()
        if not name.startswith("hrnet"):
            raise ValueError(f"HRNetFeatures: expected a timm HRNet name (hrnet_w18_small_v2 ...), got {name!r}")
        self.model = timm.create_model(name, pretrained=pretrained, features_only=True, feature_location="",
                                       out_indices=(1, 2, 3, 4))
        self.out_channels = list(self.model.feature_info.channels())
        self.strides = list(self.model.feature_info.reduction())

    def forward(self, image: Tensor) -> list[Tensor]:
        return list(self.model(image))
