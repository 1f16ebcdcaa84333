"""Data: the :class:`VitlabDataModule` base of every DataModule, the procedural SyntheticScenes and SyntheticStereo,
ImageNet-layout folders, image pairs, real dense datasets, file-format readers, transforms, samplers, colour maps.

Sibling packages import from here (``from vitlab.core.data import ...``), not from the modules below it.
"""

from vitlab.core.data.base import SPLITS, VitlabDataModule, to_float_images, to_uint8_images
from vitlab.core.data.colormaps import colorize, colorize_labels, label_palette
from vitlab.core.data.constants import (
    IGNORE_INDEX,
    IMAGENET_MEAN,
    IMAGENET_STD,
    denormalize_image,
    imagenet_normalize,
    normalize_image,
)
from vitlab.core.data.contracts import (
    READERS,
    EmptyGroundTruthWarning,
    FormatContract,
    check,
    contract_of,
    declares,
)
from vitlab.core.data.dense import (
    ADE20KDataModule,
    CityscapesDataModule,
    DenseDataModule,
    DenseFilesDataset,
    NYUDepthDataModule,
)
from vitlab.core.data.gpu_augment import BatchColorAugment, BatchPhotometricDistortion
from vitlab.core.data.imagefolder import ImageFolderDataModule
from vitlab.core.data.io import (
    DatasetFormatError,
    array_to_image_tensor,
    open_image,
    read_depth_png,
    read_disparity_pfm,
    read_image,
    read_image_tensor,
    read_kitti_disparity,
    read_label_png,
    read_middlebury_disparity,
    read_pfm,
    read_png_scaled,
    require_dir,
    write_kitti_disparity,
    write_pfm,
    write_png16,
)
from vitlab.core.data.labels import (
    CITYSCAPES_CLASS_NAMES,
    CITYSCAPES_LABEL_TO_TRAIN_ID,
    decode_ade20k_label,
    decode_cityscapes_label,
    decode_nyu_depth,
    read_ade20k_full_seg,
)
from vitlab.core.data.loader import make_loader
from vitlab.core.data.pairs import ImagePairDataModule, ImagePairs, list_image_pairs
from vitlab.core.data.render import CLASS_NAMES, MODALITIES, NUM_CLASSES, NUM_PARTS
from vitlab.core.data.sampling import (
    EpochShuffleSampler,
    ResumableDataMixin,
    SeededSamples,
    sample_seed,
    sample_seeding,
)
from vitlab.core.data.synthetic import SyntheticScenes
from vitlab.core.data.synthetic_datamodules import SyntheticScenesDataModule, SyntheticStereoDataModule
from vitlab.core.data.synthetic_stereo import STEREO_MODALITIES, SyntheticStereo
from vitlab.core.data.transforms import (
    VALID_KEY,
    DenseEvalTransform,
    DenseTrainTransform,
    PhotometricDistortion,
    crop_sample,
    dense_collate,
    hflip_sample,
    pad_sample,
    rescale_size,
    resize_sample,
)

__all__ = [
    "ADE20KDataModule",
    "BatchColorAugment",
    "BatchPhotometricDistortion",
    "CITYSCAPES_CLASS_NAMES",
    "CITYSCAPES_LABEL_TO_TRAIN_ID",
    "CLASS_NAMES",
    "CityscapesDataModule",
    "DatasetFormatError",
    "DenseDataModule",
    "DenseEvalTransform",
    "DenseFilesDataset",
    "DenseTrainTransform",
    "EmptyGroundTruthWarning",
    "EpochShuffleSampler",
    "FormatContract",
    "IGNORE_INDEX",
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "ImageFolderDataModule",
    "ImagePairDataModule",
    "ImagePairs",
    "MODALITIES",
    "NUM_CLASSES",
    "NUM_PARTS",
    "NYUDepthDataModule",
    "PhotometricDistortion",
    "READERS",
    "ResumableDataMixin",
    "SPLITS",
    "STEREO_MODALITIES",
    "SeededSamples",
    "SyntheticScenes",
    "SyntheticScenesDataModule",
    "SyntheticStereo",
    "SyntheticStereoDataModule",
    "VALID_KEY",
    "VitlabDataModule",
    "array_to_image_tensor",
    "check",
    "colorize",
    "colorize_labels",
    "contract_of",
    "crop_sample",
    "declares",
    "decode_ade20k_label",
    "decode_cityscapes_label",
    "decode_nyu_depth",
    "denormalize_image",
    "dense_collate",
    "hflip_sample",
    "imagenet_normalize",
    "label_palette",
    "list_image_pairs",
    "make_loader",
    "normalize_image",
    "open_image",
    "pad_sample",
    "read_ade20k_full_seg",
    "read_depth_png",
    "read_disparity_pfm",
    "read_image",
    "read_image_tensor",
    "read_kitti_disparity",
    "read_label_png",
    "read_middlebury_disparity",
    "read_pfm",
    "read_png_scaled",
    "require_dir",
    "rescale_size",
    "resize_sample",
    "sample_seed",
    "sample_seeding",
    "to_float_images",
    "to_uint8_images",
    "write_kitti_disparity",
    "write_pfm",
    "write_png16",
]
