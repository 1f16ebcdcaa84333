"""Decoders of dense ground-truth files into train ids / metric maps (ADE20K, Cityscapes, NYU depth)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from vitlab.core.data.constants import IGNORE_INDEX
from vitlab.core.data.io import DatasetFormatError, open_image, read_depth_png, read_label_png

__all__ = [
    "CITYSCAPES_CLASS_NAMES",
    "CITYSCAPES_LABEL_TO_TRAIN_ID",
    "decode_ade20k_label",
    "decode_cityscapes_label",
    "decode_nyu_depth",
    "read_ade20k_full_seg",
]


def read_ade20k_full_seg(path: str | Path) -> tuple[np.ndarray, np.ndarray]:
    """Decode a full-release ADE20K ``*_seg.png`` (or ``*_parts_N.png``): ``(class_map, instance_map)`` int64.

    The RGB coding of the ADE20K toolkit: ``class = R // 10 * 256 + G`` (an index into the full ADE20K
    object list, 0 = unlabelled; it equals ``name_ndx`` of the objects in the image's ``.json``), and the
    instances are the distinct ``B`` values, numbered 1..K by increasing ``B`` (0 = ``B == 0``, no
    instance). These are *not* the 150 SceneParsing classes of ADEChallengeData2016.
    """
    what = "an RGB ADE20K segmentation PNG (class = R // 10 * 256 + G, instance from B)"
    p = Path(path)
    im = open_image(p, what)
    if im.mode != "RGB":
        raise DatasetFormatError(f"{p}: image mode {im.mode!r}; expected {what}")
    rgb = np.asarray(im)
    r, g, b = (rgb[..., i].astype(np.int64) for i in range(3))
    class_map = r // 10 * 256 + g
    _, inverse = np.unique(b, return_inverse=True)
    instance_map = inverse.reshape(b.shape).astype(np.int64)
    if b.min() > 0:
        instance_map += 1
    return class_map, instance_map


def decode_ade20k_label(path: Path, reduce_zero_label: bool = True, num_classes: int = 150) -> np.ndarray:
    """ADEChallengeData2016 annotation -> (H, W) int64: 0 ("other") -> 255, 1..150 -> 0..149 (mmseg
    ``reduce_zero_label``). Values above ``num_classes`` are a format error."""
    lab = read_label_png(path).astype(np.int64)
    top = num_classes if reduce_zero_label else num_classes - 1
    bad = (lab > top) & (lab != IGNORE_INDEX)
    if bad.any():
        raise DatasetFormatError(
            f"{path}: label values {np.unique(lab[bad])[:10].tolist()} outside 0..{top}; expected an "
            "ADEChallengeData2016 annotation (uint8, 0 = other, 1..150 = classes)"
        )
    if reduce_zero_label:
        lab = np.where(lab == 0, IGNORE_INDEX, lab - 1)
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


def decode_cityscapes_label(path: Path, label_type: str = "labelTrainIds") -> np.ndarray:
    """``*_gtFine_labelTrainIds.png`` (0..18, 255) as is, or ``*_gtFine_labelIds.png`` mapped to train ids."""
    lab = read_label_png(path)
    if lab.dtype != np.uint8:
        raise DatasetFormatError(f"{path}: 16-bit PNG; expected an 8-bit Cityscapes {label_type} map")
    if label_type == "labelIds":
        return _CS_LUT[lab]
    lab = lab.astype(np.int64)
    bad = (lab >= len(CITYSCAPES_CLASS_NAMES)) & (lab != IGNORE_INDEX)
    if bad.any():
        raise DatasetFormatError(
            f"{path}: values {np.unique(lab[bad])[:10].tolist()} are not train ids; expected 0..18 or 255 "
            "(use label_type='labelIds' for *_gtFine_labelIds.png)"
        )
    return lab


def decode_nyu_depth(path: Path, depth_scale: float = 1000.0, max_depth: float | None = 10.0) -> np.ndarray:
    """uint16 depth PNG -> (1, H, W) float32 metres (``v / depth_scale``); 0 and depths > ``max_depth`` -> +inf."""
    d = read_depth_png(path, scale=depth_scale)
    if max_depth is not None:
        d[d > max_depth] = np.inf
    return d[None]

