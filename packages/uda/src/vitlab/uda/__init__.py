"""vitlab.uda — Unsupervised domain adaptation for semantic segmentation: DAFormer-style mean-teacher
self-training (DACS/DAFormer, MIC) and CLDA collaborative teacher-student.

Installing this distribution registers it in the `vitlab.plugins` entry-point group, so the
`vitlab` CLI resolves its classes by short name.
"""

from vitlab.uda.clda import CLDA, kd_loss, layer_saliency_rate
from vitlab.uda.dacs import DACS, SourceOnly, UDASegmentation
from vitlab.uda.data import (
    CLASS_NAMES,
    GTA_TO_TRAIN_ID,
    SYNTHIA13_CLASSES,
    SYNTHIA_CLASSES,
    SYNTHIA_TO_TRAIN_ID,
    RareClassSampler,
    UDADataModule,
    UDATrainTransform,
    decode_gta_label,
    decode_synthia_label,
)
from vitlab.uda.metrics import SubsetMeanIoU
from vitlab.uda.model import MeanTeacher, Segmentor

__version__ = "0.1.0"

__all__ = [
    "CLASS_NAMES",
    "CLDA",
    "kd_loss",
    "layer_saliency_rate",
    "DACS",
    "GTA_TO_TRAIN_ID",
    "MeanTeacher",
    "RareClassSampler",
    "SYNTHIA13_CLASSES",
    "SYNTHIA_CLASSES",
    "SYNTHIA_TO_TRAIN_ID",
    "Segmentor",
    "SourceOnly",
    "SubsetMeanIoU",
    "UDADataModule",
    "UDASegmentation",
    "UDATrainTransform",
    "decode_gta_label",
    "decode_synthia_label",
]
