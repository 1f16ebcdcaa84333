"""Data: the procedural SyntheticScenes and SyntheticStereo, ImageNet-layout folders, image pairs, file-format
readers, samplers."""

from vitlab.core.data.constants import IGNORE_INDEX, IMAGENET_MEAN, IMAGENET_STD, imagenet_normalize
from vitlab.core.data.dense import (
    CITYSCAPES_CLASS_NAMES,
    CITYSCAPES_LABEL_TO_TRAIN_ID,
    ADE20KDataModule,
    CityscapesDataModule,
    DenseDataModule,
    DenseEvalTransform,
    DenseFilesDataset,
    DenseTrainTransform,
    NYUDepthDataModule,
    PhotometricDistortion,
    dense_collate,
    read_ade20k_full_seg,
)
from vitlab.core.data.gpu_augment import BatchColorAugment, BatchPhotometricDistortion
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
from vitlab.core.data.loader import make_loader
from vitlab.core.data.pairs import ImagePairDataModule, ImagePairs, list_image_pairs
from vitlab.core.data.sampling import EpochShuffleSampler
from vitlab.core.data.synthetic import (
    CLASS_NAMES,
    MODALITIES,
    NUM_CLASSES,
    NUM_PARTS,
    SyntheticScenes,
    SyntheticScenesDataModule,
)
from vitlab.core.data.synthetic_stereo import STEREO_MODALITIES, SyntheticStereo, SyntheticStereoDataModule

__all__ = [
    "BatchColorAugment",
    "BatchPhotometricDistortion",
    "make_loader",
    "ADE20KDataModule",
    "CITYSCAPES_CLASS_NAMES",
    "CITYSCAPES_LABEL_TO_TRAIN_ID",
    "CityscapesDataModule",
    "DenseDataModule",
    "DenseEvalTransform",
    "DenseFilesDataset",
    "DenseTrainTransform",
    "NYUDepthDataModule",
    "PhotometricDistortion",
    "dense_collate",
    "imagenet_normalize",
    "read_ade20k_full_seg",
    "CLASS_NAMES",
    "DatasetFormatError",
    "EpochShuffleSampler",
    "IGNORE_INDEX",
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "ImageFolderDataModule",
    "ImagePairDataModule",
    "ImagePairs",
    "list_image_pairs",
    "MODALITIES",
    "NUM_CLASSES",
    "NUM_PARTS",
    "SyntheticScenes",
    "SyntheticScenesDataModule",
    "STEREO_MODALITIES",
    "SyntheticStereo",
    "SyntheticStereoDataModule",
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
