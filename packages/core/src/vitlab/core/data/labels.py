"""Decoders of dense ground-truth files into train ids / metric maps (ADE20K, Cityscapes, NYU depth).

Each decoder declares the contract of its stored format (:mod:`vitlab.core.data.contracts`): an id outside
the format is refused naming the file, before it can become a silent ignore or a loss's ``IndexError``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from vitlab.core.data.constants import IGNORE_INDEX
from vitlab.core.data.contracts import FormatContract, check, declares
from vitlab.core.data.io import depth_png_contract, open_image, read_depth_png, read_label_png

__all__ = [
    "CITYSCAPES_CLASS_NAMES",
    "CITYSCAPES_LABEL_TO_TRAIN_ID",
    "CITYSCAPES_LABEL_IDS",
    "CITYSCAPES_TRAIN_IDS",
    "ade20k_contract",
    "decode_ade20k_label",
    "decode_cityscapes_label",
    "decode_nyu_depth",
    "read_ade20k_full_seg",
]


ADE20K_FULL_SEG = FormatContract("ADE20K full-format segmentation PNG (RGB: class = R // 10 * 256 + G, "
                                 "instance from B)", bit_depth=(8,), channels=(3,))


@declares(ADE20K_FULL_SEG)
def read_ade20k_full_seg(path: str | Path) -> tuple[np.ndarray, np.ndarray]:
    """Decode a full-release ADE20K ``*_seg.png`` (or ``*_parts_N.png``): ``(class_map, instance_map)`` int64.

    The RGB coding of the ADE20K toolkit: ``class = R // 10 * 256 + G`` (an index into the full ADE20K
    object list, 0 = unlabelled; it equals ``name_ndx`` of the objects in the image's ``.json``), and the
    instances are the distinct ``B`` values, numbered 1..K by increasing ``B`` (0 = ``B == 0``, no
    instance). These are *not* the 150 SceneParsing classes of ADEChallengeData2016.
    """
    p = Path(path)
    im = open_image(p, ADE20K_FULL_SEG.name)
    check(im, ADE20K_FULL_SEG, p)
    rgb = np.asarray(im)
    r, g, b = (rgb[..., i].astype(np.int64) for i in range(3))
    class_map = r // 10 * 256 + g
    _, inverse = np.unique(b, return_inverse=True)
    instance_map = inverse.reshape(b.shape).astype(np.int64)
    if b.min() > 0:
        instance_map += 1
    return class_map, instance_map


def ade20k_contract(num_classes: int = 150, reduce_zero_label: bool = True) -> FormatContract:
    """ADEChallengeData2016 annotations: 8-bit ids, 0 = other, 1..150 = classes (255 tolerated as ignore)."""
    top = num_classes if reduce_zero_label else num_classes - 1
    return FormatContract("ADEChallengeData2016 annotation (8-bit, 0 = other, 1..150 = classes)", bit_depth=(8,),
                          channels=(1,), value_range=(0, top), ignore_index=IGNORE_INDEX)


def _train_ids(num_classes: int, dataset: str) -> FormatContract:
    """The decoded map a loss sees: train ids ``0..num_classes-1`` or 255; warns when a file has none."""
    return FormatContract(f"{dataset} label (as train ids)", value_range=(0, num_classes - 1),
                          ignore_index=IGNORE_INDEX, warn_empty=True)


@declares(ade20k_contract())
def decode_ade20k_label(path: Path, reduce_zero_label: bool = True, num_classes: int = 150) -> np.ndarray:
    """ADEChallengeData2016 annotation -> (H, W) int64: 0 ("other") -> 255, 1..150 -> 0..149 (mmseg
    ``reduce_zero_label``). Values above ``num_classes`` are a format error."""
    lab = read_label_png(path, ade20k_contract(num_classes, reduce_zero_label)).astype(np.int64)
    if reduce_zero_label:
        lab = np.where(lab == 0, IGNORE_INDEX, lab - 1)
    check(lab, _train_ids(num_classes, "ADE20K"), path)
    return lab


#: Cityscapes labelId -> trainId (cityscapesscripts ``labels.py``); every other id -> 255.
CITYSCAPES_LABEL_TO_TRAIN_ID = {7: 0, 8: 1, 11: 2, 12: 3, 13: 4, 17: 5, 19: 6, 20: 7, 21: 8, 22: 9, 23: 10,
                                24: 11, 25: 12, 26: 13, 27: 14, 28: 15, 31: 16, 32: 17, 33: 18}
CITYSCAPES_CLASS_NAMES = ("road", "sidewalk", "building", "wall", "fence", "pole", "traffic light",
                          "traffic sign", "vegetation", "terrain", "sky", "person", "rider", "car", "truck",
                          "bus", "train", "motorcycle", "bicycle")
_CS_LUT = np.full(256, IGNORE_INDEX, dtype=np.int64)
for _k, _v in CITYSCAPES_LABEL_TO_TRAIN_ID.items():
    _CS_LUT[_k] = _v


#: ``*_gtFine_labelIds.png``: Cityscapes label ids 0..33 (cityscapesscripts ``labels.py``; 255 tolerated)
CITYSCAPES_LABEL_IDS = FormatContract("Cityscapes labelIds map (8-bit, Cityscapes ids)", bit_depth=(8,),
                                      channels=(1,), value_range=(0, 33), ignore_index=IGNORE_INDEX)
#: ``*_gtFine_labelTrainIds.png``: the 19 train ids and 255
CITYSCAPES_TRAIN_IDS = FormatContract("Cityscapes labelTrainIds map (8-bit)", bit_depth=(8,), channels=(1,),
                                      value_range=(0, len(CITYSCAPES_CLASS_NAMES) - 1), ignore_index=IGNORE_INDEX,
                                      warn_empty=True, hint="use label_type='labelIds' for *_gtFine_labelIds.png")
_CS_DECODED = _train_ids(len(CITYSCAPES_CLASS_NAMES), "Cityscapes")


@declares(CITYSCAPES_TRAIN_IDS, label_type="labelTrainIds")
@declares(CITYSCAPES_LABEL_IDS, label_type="labelIds")
def decode_cityscapes_label(path: Path, label_type: str = "labelTrainIds") -> np.ndarray:
    """``*_gtFine_labelTrainIds.png`` (0..18, 255) as is, or ``*_gtFine_labelIds.png`` mapped to train ids."""
    if label_type == "labelIds":
        lab = _CS_LUT[read_label_png(path, CITYSCAPES_LABEL_IDS)]
        check(lab, _CS_DECODED, path)
        return lab
    return read_label_png(path, CITYSCAPES_TRAIN_IDS).astype(np.int64)


@declares(depth_png_contract())
def decode_nyu_depth(path: Path, depth_scale: float = 1000.0, max_depth: float | None = 10.0) -> np.ndarray:
    """uint16 depth PNG -> (1, H, W) float32 metres (``v / depth_scale``); 0 and depths > ``max_depth`` -> +inf."""
    d = read_depth_png(path, scale=depth_scale)
    if max_depth is not None:
        d[d > max_depth] = np.inf
    return d[None]

