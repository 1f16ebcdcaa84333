"""Dense prediction heads: DPT (CroCo-Stereo configuration), SETR-Naive linear head, SETR-PUP."""

from .daformer import DAFormerHead, DepthwiseSeparableASPP
from .dpt import DPTHead, FusionBlock, ResidualConvUnit
from .simple import LinearHead, ProgressiveUpsamplingHead, make_norm2d

__all__ = [
    "DPTHead",
    "FusionBlock",
    "ResidualConvUnit",
    "LinearHead",
    "ProgressiveUpsamplingHead",
    "make_norm2d",
    "DAFormerHead",
    "DepthwiseSeparableASPP",
]
