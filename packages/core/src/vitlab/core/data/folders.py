"""One's own segmentation dataset from a config: an image folder, a label folder and a class list.

The layout is mmsegmentation's "custom dataset" one (an ``img_dir`` and an ``ann_dir`` per split, labels as
class-index PNGs), so a copy prepared for mmseg reads as is::

    root/
      images/<split>/NAME.{jpg,jpeg,png}
      labels/<split>/NAME.png     class ids 0..K-1 (8/16-bit grey or palette-indexed PNG), ignore_index elsewhere
      classes.txt                 optional: one class name per line (used when the config lists none)

Labels may instead be colour-coded RGB PNGs (CamVid-style): give ``palette``, one ``[r, g, b]`` per class, and
``ignore_color`` for the void colour; any other colour is an error naming the file. An image without a label
(or a label without an image) is an error too, except for a split read for its images only (the unlabelled
target of domain adaptation). :class:`SegmentationFolder` is the description a config gives; core's
:class:`FolderSegmentationDataModule` trains ``vitlab.core.SemanticSegmentation`` on it, and
``vitlab.uda.UDADataModule`` takes one as its labelled source or its unlabelled target (``source: folder`` /
``target: folder``).
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from vitlab.core.data.constants import IGNORE_INDEX
from vitlab.core.data.contracts import ContractViolation, FormatContract, check, declares
from vitlab.core.data.dense import IMAGE_EXTENSIONS, DenseDataModule, _files, _match
from vitlab.core.data.io import DatasetFormatError, _existing_file, open_image, read_label_png, require_dir

__all__ = ["FolderSegmentationDataModule", "SegmentationFolder", "decode_folder_label", "folder_label_contract"]

FOLDER_LAYOUT = """root/
  images/<split>/NAME.{jpg,jpeg,png}
  labels/<split>/NAME.png    class ids 0..K-1 as an 8/16-bit grey or palette PNG, ignore_index elsewhere
                             (or RGB colours with `palette`: one [r, g, b] per class)
  classes.txt                optional: one class name per line"""


def folder_label_contract(num_classes: int, ignore_index: int = IGNORE_INDEX,
                          reduce_zero_label: bool = False) -> FormatContract:
    """Stored class ids: ``0..K-1`` (``1..K`` with ``reduce_zero_label``, where 0 is ignored) or ``ignore_index``."""
    lo, hi = (0, num_classes) if reduce_zero_label else (0, num_classes - 1)
    return FormatContract(f"segmentation label PNG ({num_classes} classes)", bit_depth=(8, 16), channels=(1,),
                          value_range=(lo, hi), ignore_index=ignore_index,
                          hint="class ids must lie below the number of classes in the config's `classes`")


_COLOR_LABEL = FormatContract("colour-coded segmentation label (8-bit RGB PNG)", bit_depth=(8,), channels=(3, 4))
_DECODED = FormatContract("segmentation label (as class ids)", ignore_index=IGNORE_INDEX, warn_empty=True)

_PALETTE2 = ((0, 1, 1), (255, 255, 255))  # the registered example (the reader tests write colour (0, 1, 1))


@declares(folder_label_contract(2), num_classes=2)
@declares(_COLOR_LABEL, num_classes=2, palette=_PALETTE2)
def decode_folder_label(path: Path, num_classes: int, ignore_index: int = IGNORE_INDEX,
                        reduce_zero_label: bool = False, palette: Sequence[Sequence[int]] | None = None,
                        ignore_color: Sequence[int] | None = None) -> np.ndarray:
    """A label file -> (H, W) int64 class ids, 255 = ignore.

    Ids: stored values ``0..K-1`` (or ``1..K`` with ``reduce_zero_label``: 0 -> ignore, mmseg's convention) and
    ``ignore_index`` -> 255. Colours (``palette``): ``palette[c]`` -> ``c``, ``ignore_color`` -> 255; any other
    colour raises, naming the file and the first unknown colours.
    """
    if palette is None:
        lab = read_label_png(path, folder_label_contract(num_classes, ignore_index, reduce_zero_label))
        lab = lab.astype(np.int64)
        ignored = lab == ignore_index
        if reduce_zero_label:
            ignored |= lab == 0
            lab = lab - 1
        out = np.where(ignored, IGNORE_INDEX, lab)
    else:
        p = _existing_file(path, _COLOR_LABEL.name)
        im = open_image(p, _COLOR_LABEL.name)
        check(im, _COLOR_LABEL, p)
        rgb = np.asarray(im.convert("RGB"), dtype=np.int64)
        code = (rgb[..., 0] << 16) | (rgb[..., 1] << 8) | rgb[..., 2]
        keys = [(int(r) << 16) | (int(g) << 8) | int(b) for r, g, b in palette]
        out = np.full(code.shape, -1, np.int64)
        for c, k in enumerate(keys):
            out[code == k] = c
        if ignore_color is not None:
            r, g, b = ignore_color
            out[code == ((int(r) << 16) | (int(g) << 8) | int(b))] = IGNORE_INDEX
        if (out < 0).any():
            bad = np.unique(code[out < 0])[:3]
            colours = ", ".join(f"[{k >> 16}, {(k >> 8) & 255}, {k & 255}]" for k in bad.tolist())
            raise ContractViolation(f"{p}: colour(s) {colours} are neither in the config's palette "
                                    f"({len(keys)} classes) nor its ignore_color {list(ignore_color or [])}")
    check(out, _DECODED, path)
    return out


class SegmentationFolder:
    """A segmentation dataset in plain folders (layout in the module docstring), described in a config.

    Args:
        root: the dataset folder.
        classes: class names in id order; default: ``root/classes.txt``.
        palette: ``[r, g, b]`` per class when the label files are colour-coded RGB; also colours predictions.
        ignore_color: the void colour of colour-coded labels (read as ignore).
        ignore_index: the stored id that means "no label" (mapped to vitlab's 255).
        reduce_zero_label: stored 0 is "other" (ignored) and ids 1..K are the classes (ADE20K's convention).
        images, labels: the two folder names under ``root``.
        label_suffix: what a label's file name adds to its image's stem (``"_mask"`` for ``a.jpg`` ->
            ``a_mask.png``); the label extension is always ``.png``.
    """

    def __init__(self, root: str | Path, classes: Sequence[str] | None = None,
                 palette: Sequence[Sequence[int]] | None = None, ignore_color: Sequence[int] | None = None,
                 ignore_index: int = IGNORE_INDEX, reduce_zero_label: bool = False, images: str = "images",
                 labels: str = "labels", label_suffix: str = "") -> None:
        self.root = Path(root)
        self.classes = tuple(classes) if classes else self._classes_file()
        if palette is not None:
            palette = [tuple(int(v) for v in c) for c in palette]
            if len(palette) != len(self.classes) or any(len(c) != 3 for c in palette):
                raise ValueError(f"{self.root}: palette must hold one [r, g, b] per class ({len(self.classes)} "
                                 f"classes), got {len(palette)} entries")
        self.palette = palette
        self.ignore_color = tuple(ignore_color) if ignore_color is not None else None
        self.ignore_index = int(ignore_index)
        self.reduce_zero_label = bool(reduce_zero_label)
        self.image_dir, self.label_dir, self.label_suffix = images, labels, label_suffix

    def _classes_file(self) -> tuple[str, ...]:
        path = self.root / "classes.txt"
        if not path.is_file():
            raise DatasetFormatError(f"{self.root}: no class list; give `classes` in the config or write "
                                     f"{path} (one name per line); expected layout:\n{FOLDER_LAYOUT}")
        names = tuple(line.strip() for line in path.read_text().splitlines() if line.strip())
        if not names:
            raise DatasetFormatError(f"{path}: empty; expected one class name per line")
        return names

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    def decoder(self):
        return functools.partial(decode_folder_label, num_classes=self.num_classes, ignore_index=self.ignore_index,
                                 reduce_zero_label=self.reduce_zero_label, palette=self.palette,
                                 ignore_color=self.ignore_color)

    def images(self, split: str) -> list[Path]:
        """The images of ``split`` (labels not needed: an unlabelled target)."""
        folder = require_dir(self.root / self.image_dir / split, FOLDER_LAYOUT, f"image folder of split {split!r}")
        found = _files(folder, IMAGE_EXTENSIONS, recursive=True)
        if not found:
            raise DatasetFormatError(f"{folder}: no images ({', '.join(IMAGE_EXTENSIONS)}); expected layout:\n"
                                     f"{FOLDER_LAYOUT}")
        return found

    def pairs(self, split: str) -> list[tuple[Path, Path]]:
        """(image, label) files of ``split``, matched by relative path and stem."""
        img_dir = require_dir(self.root / self.image_dir / split, FOLDER_LAYOUT, f"image folder of split {split!r}")
        gt_dir = require_dir(self.root / self.label_dir / split, FOLDER_LAYOUT, f"label folder of split {split!r}")
        suffix = self.label_suffix + ".png"
        images = {str(p.relative_to(img_dir).with_suffix("")): p
                  for p in _files(img_dir, IMAGE_EXTENSIONS, recursive=True)}
        labels = {str(p.relative_to(gt_dir))[: -len(suffix)]: p for p in _files(gt_dir, (suffix,), recursive=True)}
        return _match(images, labels, img_dir, gt_dir, FOLDER_LAYOUT)


class FolderSegmentationDataModule(DenseDataModule):
    """Semantic segmentation on one's own folders (:class:`SegmentationFolder`), with mmseg's train pipeline.

    The folder arguments are :class:`SegmentationFolder`'s; the rest are :class:`DenseDataModule`'s. Defaults:
    keep-ratio resize to ``scale`` x U(0.5, 2.0), ``size`` crop, flip, photometric jitter (mmseg's custom-dataset
    recipe); evaluation on the whole image resized to ``eval_scale`` (``null``: as stored). The test split
    defaults to the validation split.
    """

    layout = FOLDER_LAYOUT

    def __init__(self, root: str, classes: list[str] | None = None, palette: list[list[int]] | None = None,
                 ignore_color: list[int] | None = None, ignore_index: int = IGNORE_INDEX,
                 reduce_zero_label: bool = False, images: str = "images", labels: str = "labels",
                 label_suffix: str = "", size: int | tuple[int, int] = 512, batch_size: int = 8,
                 num_workers: int = 4, train_split: str = "train", val_split: str = "val", test_split: str = "val",
                 scale: tuple[int, int] | None = (2048, 512), ratio_range: tuple[float, float] | None = (0.5, 2.0),
                 flip_prob: float = 0.5, photometric: bool = True, eval_mode: str = "whole",
                 eval_scale: tuple[int, int] | None = (2048, 512), val_batch_size: int | None = 1,
                 size_divisor: int = 32, normalize: bool = True, seed: int = 0,
                 photometric_on_device: bool = False) -> None:
        super().__init__(root, size, batch_size, num_workers, train_split, val_split, test_split, scale,
                         ratio_range, flip_prob, photometric, eval_mode, eval_scale, val_batch_size,
                         size_divisor, normalize, seed, photometric_on_device)
        self.save_hyperparameters()
        self.folder = SegmentationFolder(root, classes, palette, ignore_color, ignore_index, reduce_zero_label,
                                         images, labels, label_suffix)

    @property
    def num_classes(self) -> int:
        return self.folder.num_classes

    @property
    def class_names(self) -> tuple[str, ...]:
        return self.folder.classes

    def decoder(self):
        return self.folder.decoder()

    def pairs(self, split: str) -> list[tuple[Path, Path]]:
        return self.folder.pairs(split)
