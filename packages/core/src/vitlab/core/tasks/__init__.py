"""Downstream task modules: classification, semantic segmentation, depth estimation."""

from vitlab.core.tasks.base import BackboneTask, VitlabModule
from vitlab.core.tasks.classification import ImageClassification
from vitlab.core.tasks.dense import DenseTask, DepthEstimation, SemanticSegmentation, build_head

__all__ = [
    "BackboneTask",
    "DenseTask",
    "DepthEstimation",
    "ImageClassification",
    "SemanticSegmentation",
    "VitlabModule",
    "build_head",
]
