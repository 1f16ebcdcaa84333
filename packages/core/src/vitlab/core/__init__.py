"""vitlab.core — the base of every vitlab package.

Backbones (:class:`ViT`), dense heads, downstream task modules (classification, semantic segmentation,
depth), the EMA teacher, metrics, callbacks, data (SyntheticScenes, image folders, readers) and the
``vitlab`` CLI. Sibling packages (pretrain, peft, stereo, mtl, uda) build on these names.
"""

from vitlab.core.backbones import (
    CroCoNet,
    CrossBlock,
    HRNetFeatures,
    MaskOutput,
    MiT,
    RoPE2D,
    Swin,
    ViT,
    load_checkpoint,
    masked_mse,
    norm_pix_target,
    patchify,
    random_masking,
    unpatchify,
)
from vitlab.core.callbacks import ModelCheckpoint, NonFiniteGuard, PlainProgressBar, PredictionImageLogger
from vitlab.core.ema import EMATeacher
from vitlab.core.heads import DAFormerHead, DPTHead, LinearHead, ProgressiveUpsamplingHead
from vitlab.core.inference import predict_image
from vitlab.core.metrics import DepthMetrics
from vitlab.core.optim import param_groups, warmup_cosine
from vitlab.core.tasks import (
    BackboneTask,
    DenseTask,
    DepthEstimation,
    ImageClassification,
    SemanticSegmentation,
    VitlabModule,
)
from vitlab.core.tuner import Tuner, count_parameters

__version__ = "0.1.0"

__all__ = [
    "BackboneTask",
    "CroCoNet",
    "CrossBlock",
    "MaskOutput",
    "DPTHead",
    "DenseTask",
    "DepthEstimation",
    "DepthMetrics",
    "EMATeacher",
    "ImageClassification",
    "LinearHead",
    "ModelCheckpoint",
    "NonFiniteGuard",
    "PlainProgressBar",
    "PredictionImageLogger",
    "ProgressiveUpsamplingHead",
    "RoPE2D",
    "SemanticSegmentation",
    "Tuner",
    "ViT",
    "VitlabModule",
    "count_parameters",
    "load_checkpoint",
    "masked_mse",
    "norm_pix_target",
    "patchify",
    "predict_image",
    "random_masking",
    "unpatchify",
    "param_groups",
    "warmup_cosine",
    "MiT",
    "DAFormerHead",
    "Swin",
    "HRNetFeatures",
]
