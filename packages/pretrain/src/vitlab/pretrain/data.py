"""RGB + pseudo-depth image folders for SG-MIM (MultiMAE layout).

MultiMAE (Bachmann et al., `EPFL-VILAB/MultiMAE` ``SETUP.md``) ships ImageNet-1K pseudo-depth from DPT-Hybrid
(Omnidata) as 16-bit PNGs, one folder per modality with the same class sub-folders and file stems::

    root/<split>/rgb/<class>/<stem>.JPEG
    root/<split>/depth/<class>/<stem>.png      # uint16, depth = value / 2**16 (SG-MIM's loader)

Both views get the same RandomResizedCrop (scale 0.67-1, ratio 3/4-4/3, bilinear) and flip, as SG-MIM's
joint augmentation; only the RGB image is ImageNet-normalised (on the device, by core's
:class:`~vitlab.core.data.VitlabDataModule`). Batches: ``{"image", "depth", "label"}``.
"""

from __future__ import annotations

import random
from pathlib import Path

import torch
import torchvision.transforms.v2.functional as TF
from torch.utils.data import Dataset
from torchvision import transforms as T

from vitlab.core.data import DatasetFormatError, VitlabDataModule, read_image_tensor, read_png_scaled

__all__ = ["PseudoDepthFolderDataset", "PseudoDepthFolderDataModule"]

_IMG_EXTS = (".jpg", ".jpeg", ".png", ".ppm", ".bmp", ".webp")
_LAYOUT = "root/{split}/{rgb}/<class>/<stem>.<jpg|png> with root/{split}/{depth}/<class>/<stem>.png (16-bit)"


class PseudoDepthFolderDataset(Dataset):
    """Pairs ``rgb`` images with 16-bit pseudo-depth PNGs of the same stem (see the module docstring).

    Args:
        root: dataset root. split: ``train`` / ``val``.
        size: output side (224). train: random joint crop + flip; else resize the short side and centre-crop.
        rgb_dir, depth_dir: modality folder names (``rgb``, ``depth``).
        depth_divisor: stored value / divisor = depth (2**16).
        scale, ratio: RandomResizedCrop ranges (0.67-1, 3/4-4/3).
    """

    def __init__(self, root: str | Path, split: str = "train", size: int = 224, train: bool = True,
                 rgb_dir: str = "rgb", depth_dir: str = "depth", depth_divisor: float = 2.0**16,
                 scale: tuple[float, float] = (0.67, 1.0), ratio: tuple[float, float] = (3 / 4, 4 / 3)) -> None:
        layout = _LAYOUT.format(split=split, rgb=rgb_dir, depth=depth_dir)
        self.rgb_root = Path(root) / split / rgb_dir
        self.depth_root = Path(root) / split / depth_dir
        for d in (self.rgb_root, self.depth_root):
            if not d.is_dir():
                raise FileNotFoundError(f"{d}: folder not found; expected {layout}")
        self.classes = sorted(p.name for p in self.rgb_root.iterdir() if p.is_dir())
        if not self.classes:
            raise DatasetFormatError(f"{self.rgb_root}: no class sub-folders; expected {layout}")
        self.samples: list[tuple[Path, Path, int]] = []
        for c, name in enumerate(self.classes):
            for img in sorted((self.rgb_root / name).iterdir()):
                if img.suffix.lower() not in _IMG_EXTS:
                    continue
                depth = self.depth_root / name / (img.stem + ".png")
                if not depth.is_file():
                    raise DatasetFormatError(f"{depth}: pseudo-depth PNG missing for image {img}; expected {layout}")
                self.samples.append((img, depth, c))
        if not self.samples:
            raise DatasetFormatError(f"{self.rgb_root}: no images found; expected {layout}")
        self.size, self.train = int(size), bool(train)
        self.depth_divisor = float(depth_divisor)
        self.scale, self.ratio = tuple(scale), tuple(ratio)

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        img_path, depth_path, label = self.samples[index]
        image = read_image_tensor(img_path, uint8=False)
        depth = torch.from_numpy(read_png_scaled(depth_path, self.depth_divisor, invalid_value=None))[None]
        if depth.shape[-2:] != image.shape[-2:]:
            raise DatasetFormatError(
                f"{depth_path}: depth is {tuple(depth.shape[-2:])}, image {img_path} is {tuple(image.shape[-2:])}"
            )
        s = [self.size, self.size]
        bil = T.InterpolationMode.BILINEAR
        if self.train:
            i, j, h, w = T.RandomResizedCrop.get_params(image, self.scale, self.ratio)
            image = TF.resized_crop(image, i, j, h, w, s, bil, antialias=True)
            depth = TF.resized_crop(depth, i, j, h, w, s, bil, antialias=True)
            if random.random() < 0.5:
                image, depth = image.flip(-1), depth.flip(-1)
        else:
            image = TF.center_crop(TF.resize(image, self.size, bil, antialias=True), s)
            depth = TF.center_crop(TF.resize(depth, self.size, bil, antialias=True), s)
        image = image.clamp(0, 1)
        return {"image": image, "depth": depth, "label": torch.tensor(label)}


class PseudoDepthFolderDataModule(VitlabDataModule):
    """Train (and optional val) splits of :class:`PseudoDepthFolderDataset` for SG-MIM pre-training."""

    def __init__(self, root: str, size: int = 224, batch_size: int = 128, num_workers: int = 8,
                 train_split: str = "train", val_split: str | None = None, rgb_dir: str = "rgb",
                 depth_dir: str = "depth", depth_divisor: float = 2.0**16, seed: int = 0) -> None:
        super().__init__(batch_size=batch_size, num_workers=num_workers, seed=seed)
        self.save_hyperparameters()

    def make_dataset(self, split: str) -> PseudoDepthFolderDataset | None:
        hp = self.hparams
        name = {"train": hp.train_split, "val": hp.val_split}.get(split)
        if not name:
            return None
        return PseudoDepthFolderDataset(hp.root, name, hp.size, split == "train", hp.rgb_dir, hp.depth_dir,
                                        hp.depth_divisor)
