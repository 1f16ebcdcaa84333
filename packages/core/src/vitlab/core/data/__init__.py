"""Data: the procedural SyntheticScenes, ImageNet-layout folders, file-format readers, samplers."""

from vitlab.core.data.constants import IGNORE_INDEX, IMAGENET_MEAN, IMAGENET_STD
from vitlab.core.data.imagefolder import ImageFolderDataModule
from vitlab.core.data.io import (
    DatasetFormatError,
    colorize,
    colorize_labels,
    label_palette,
    read_depth_png,
    read_disparity_pfm,
    read_image,
    read_kitti_disparity,
    read_label_png,
    read_pfm,
    read_png_scaled,
    write_kitti_disparity,
    write_pfm,
    write_png16,
)
from vitlab.core.data.sampling import EpochShuffleSampler
from vitlab.core.data.synthetic import (
    CLASS_NAMES,
    MODALITIES,
    NUM_CLASSES,
    NUM_PARTS,
    SyntheticScenes,
    SyntheticScenesDataModule,
)

__all__ = [
    "CLASS_NAMES",
    "DatasetFormatError",
    "EpochShuffleSampler",
    "IGNORE_INDEX",
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "ImageFolderDataModule",
    "MODALITIES",
    "NUM_CLASSES",
    "NUM_PARTS",
    "SyntheticScenes",
    "SyntheticScenesDataModule",
    "colorize",
    "colorize_labels",
    "label_palette",
    "read_depth_png",
    "read_disparity_pfm",
    "read_image",
    "read_kitti_disparity",
    "read_label_png",
    "read_pfm",
    "read_png_scaled",
    "write_kitti_disparity",
    "write_pfm",
    "write_png16",
]
