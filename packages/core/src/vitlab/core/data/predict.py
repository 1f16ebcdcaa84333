"""``vitlab predict`` on a folder of one's own images, for every single-image task module.

``--data vitlab.core.data.ImageFolderPredictDataModule --data.images photos/`` (a folder, a file or a glob such
as ``'photos/**/*.jpg'``) reads every image core's reader reads (PNG, JPEG, BMP, TIFF, WebP, ...; greyscale is
replicated, alpha dropped, 16-bit kept until the uint8 transfer) at any size. ``size`` resizes each image for the
network; each sample keeps its size on disk in ``orig_size``, so the writers save maps at the input resolution.
"""

from __future__ import annotations

import glob
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from PIL import Image
from torch.utils.data import Dataset
from torchvision.datasets.folder import IMG_EXTENSIONS

from vitlab.core.data.base import VitlabDataModule
from vitlab.core.data.io import DatasetFormatError, read_image_tensor
from vitlab.core.errors import ConfigError

__all__ = ["ImageFolderPredict", "ImageFolderPredictDataModule", "list_images"]

_WHAT = "an image file (png, jpg, bmp, tif, webp, ...)"


def list_images(images: str | os.PathLike) -> list[Path]:
    """The image files of a folder (not recursive), a single file or a glob pattern, sorted.

    Raises :class:`~vitlab.core.errors.ConfigError` naming ``images`` when nothing matches.
    """
    p = Path(images)
    if p.is_dir():
        files = sorted(f for f in p.iterdir() if f.is_file() and f.suffix.lower() in IMG_EXTENSIONS)
    elif p.is_file():
        files = [p]
    else:
        files = sorted(Path(f) for f in glob.glob(str(images), recursive=True)
                       if Path(f).is_file() and Path(f).suffix.lower() in IMG_EXTENSIONS)
    if not files:
        raise ConfigError(f"{images}: no image files (expected a folder, file or glob of {_WHAT})")
    return files


def unique_names(files: Sequence[Path]) -> list[str]:
    """Output names of input files: the stem; the path below the common folder when two stems collide."""
    stems = [f.stem for f in files]
    if len(set(stems)) == len(stems):
        return stems
    common = Path(os.path.commonpath([str(f.resolve()) for f in files]))
    return [str(f.resolve().relative_to(common).with_suffix("")).replace(os.sep, "/") for f in files]


def image_size(path: Path) -> tuple[int, int]:
    """``(H, W)`` from the header only (no decoding), naming the file when it is not an image."""
    try:
        with Image.open(path) as im:
            return im.size[1], im.size[0]
    except FileNotFoundError:
        raise
    except Exception as e:
        raise DatasetFormatError(f"{path}: cannot read as {_WHAT}: {type(e).__name__}: {e}") from e


def _check_size(size: Any) -> tuple[int, int] | None:
    if size is None:
        return None
    hw = (size, size) if isinstance(size, int) and not isinstance(size, bool) else tuple(size)
    if len(hw) != 2 or not all(isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in hw):
        raise ConfigError(f"ImageFolderPredictDataModule: `size` must be a positive int or [H, W], got {size!r}")
    return int(hw[0]), int(hw[1])


class ImageFolderPredict(Dataset):
    """Images without ground truth: ``{"image": (3, h, w) float in [0, 1], "name", "orig_size": (H, W)}``.

    Args:
        images: a folder, a file or a glob pattern (see :func:`list_images`).
        size: ``(h, w)`` the images are resized to (bilinear, antialiased); None keeps each one's own size.
    """

    def __init__(self, images: str | os.PathLike, size: tuple[int, int] | None = None) -> None:
        self.files = list_images(images)
        self.names = unique_names(self.files)
        self.sizes = [image_size(f) for f in self.files]
        self.size = size

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, index: int) -> dict[str, Any]:
        image = read_image_tensor(self.files[index], uint8=False)
        orig = tuple(image.shape[-2:])
        if self.size is not None and orig != self.size:
            image = torch.nn.functional.interpolate(image[None], size=self.size, mode="bilinear",
                                                    align_corners=False, antialias=True)[0].clamp_(0.0, 1.0)
        return {"image": image, "name": self.names[index], "orig_size": torch.tensor(orig)}


class ImageFolderPredictDataModule(VitlabDataModule):
    """``vitlab predict --data vitlab.core.data.ImageFolderPredictDataModule --data.images photos/``.

    Args:
        images: a folder, a file or a glob pattern of images; predictions are named after the file stem.
        size: resize every image to ``size`` (an int: square) for the network, e.g. the model's ``img_size``
            when its backbone needs one; the writers bring each map back to the image's own size.
        batch_size: images per forward when they share a size (otherwise one at a time).
        num_workers: loader workers.
    """

    def __init__(self, images: str, size: int | list[int] | None = None, batch_size: int = 1,
                 num_workers: int = 0) -> None:
        super().__init__(batch_size=batch_size, num_workers=num_workers)
        self.images, self.size = images, size
        self.dataset: ImageFolderPredict | None = None

    def make_dataset(self, split: str) -> Dataset | None:
        """The images, listed (and their headers read) in ``setup``, so a wrong path or a broken file stops the
        run with one line naming it."""
        if split != "predict":
            return None
        if self.dataset is None:
            hw = _check_size(self.size)
            self.dataset = ImageFolderPredict(self.images, hw)
            if hw is None and len(set(self.dataset.sizes)) > 1:
                self.val_batch_size = 1  # images of different sizes cannot share a batch
        return self.dataset
