"""vitlab.stereo — Transformer stereo matching: the CroCo-Stereo binocular ViT, UniTT-Stereo and MaDis-Stereo,
stereo datasets, tiled inference and stereo metrics.

Installing this distribution registers it in the `vitlab.plugins` entry-point group, so the
`vitlab` CLI resolves its classes by short name (``StereoMatching``, ``BinocularViT``, ``StereoDataModule`` ...).
"""

from vitlab.stereo.augment import StereoAugmentor
from vitlab.stereo.benchmark import ZeroShotEvaluator, ZeroShotStereoDataModule, sgbm_disparity
from vitlab.stereo.data import StereoDataModule
from vitlab.stereo.datasets import (
    ETH3DStereo,
    KITTIStereo,
    MiddleburyStereo,
    SceneFlowStereo,
    StereoPairs,
)
from vitlab.stereo.losses import (
    LaplacianLoss,
    LaplacianLossBounded2,
    MaskedMSE,
    StereoL1Loss,
    feature_warp_consistency,
)
from vitlab.stereo.metrics import StereoMetrics
from vitlab.stereo.model import (
    PRESETS,
    BinocularViT,
    MaskedForward,
    croco_hooks,
    decoder_hooks,
    patchify,
    unpatchify,
)
from vitlab.stereo.predict import (
    StereoImagePairs,
    StereoPairsDataModule,
    predict_disparity,
    read_stereo_image,
    resolve_pairs,
    suggest_scale,
)
from vitlab.stereo.tasks import MaDisStereo, StereoMatching, UniTTStereo, sample_mask_ratio
from vitlab.stereo.tiling import confidence_weight, tile_offsets, tiled_predict
from vitlab.stereo.writer import StereoPredictionWriter

__version__ = "0.1.0"

__all__ = [
    "PRESETS",
    "BinocularViT",
    "ETH3DStereo",
    "KITTIStereo",
    "LaplacianLoss",
    "LaplacianLossBounded2",
    "MaDisStereo",
    "MaskedForward",
    "MaskedMSE",
    "MiddleburyStereo",
    "SceneFlowStereo",
    "StereoAugmentor",
    "StereoDataModule",
    "StereoL1Loss",
    "StereoMatching",
    "StereoMetrics",
    "StereoImagePairs",
    "StereoPairs",
    "StereoPairsDataModule",
    "StereoPredictionWriter",
    "UniTTStereo",
    "ZeroShotEvaluator",
    "ZeroShotStereoDataModule",
    "confidence_weight",
    "croco_hooks",
    "decoder_hooks",
    "feature_warp_consistency",
    "patchify",
    "predict_disparity",
    "read_stereo_image",
    "resolve_pairs",
    "sample_mask_ratio",
    "sgbm_disparity",
    "suggest_scale",
    "tile_offsets",
    "tiled_predict",
    "unpatchify",
]
