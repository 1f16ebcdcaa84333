"""ImageNet-layout classification data (``root/<split>/<class_name>/<image files>``) as a LightningDataModule.

Used for MIM pre-training (labels ignored), fine-tuning and linear probing; the ``mode`` picks the
train-time augmentation recipe, evaluation is always resize + centre crop.

``decode="device"`` moves the JPEG decoding out of the loader workers: they read the file bytes and the image size
from the header and draw the crop box and the flip (the same draws, in the same order, as the worker path's
``RandomResizedCrop`` + ``RandomHorizontalFlip``), and the batch is decoded in one ``torchvision.io.decode_jpeg``
call on the training device (nvJPEG on CUDA), cropped, resized (bicubic, antialiased) and flipped there. A worker
then costs a file read instead of a decode and a resize, which is what lets a few workers feed thousands of images
a second to a GPU. Non-JPEG files are decoded on the host in the main process (slow, but rare in ImageNet).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from PIL import Image
from torch.utils.data import Dataset
from torchvision import transforms as T
from torchvision.datasets import ImageFolder
from torchvision.datasets.folder import IMG_EXTENSIONS, find_classes

from vitlab.core.data.base import VitlabDataModule
from vitlab.core.data.constants import IMAGENET_MEAN, IMAGENET_STD
from vitlab.core.data.io import DatasetFormatError, read_image

__all__ = ["ImageFolderDataModule", "ImageFolderDictDataset", "build_eval_transform", "build_train_transform",
           "decode_crops"]

MODES = ("pretrain", "finetune", "linear_probe")
#: where images are decoded: in the loader workers (PIL) or batched on the training device
DECODES = ("workers", "device")
_ENCODED = "encoded"  # batch key of the file bytes (decode="device")
_LAYOUT = "root/{split}/<class_name>/<image files> (ImageNet layout, one sub-folder per class)"


def _layout(split: str) -> str:
    return _LAYOUT.format(split=split)


def load_rgb(path: str) -> Image.Image:
    """PIL loader for ImageFolder through core's 8-bit image reader: a file it cannot decode, or a 16-bit
    one (Pillow would clip it to white), is an error naming the file (workers otherwise hide it)."""
    return Image.fromarray(read_image(path))


def build_train_transform(
    mode: str,
    size: int = 224,
    auto_augment: str | None = None,
    mean: tuple[float, ...] = IMAGENET_MEAN,
    std: tuple[float, ...] = IMAGENET_STD,
    uint8: bool = False,
) -> Callable[[Image.Image], torch.Tensor]:
    """Train-time augmentation per mode.

    ``uint8=True`` ends with a ``(3, H, W)`` uint8 tensor (no normalisation: 4x fewer bytes through
    worker queues, pinned memory and the host-to-device copy; the DataModule normalises on the device).

    ``pretrain``: RandomResizedCrop(scale 0.2..1, bicubic) + flip, the MAE recipe (MIM needs little else).
    ``finetune``: RandomResizedCrop(scale 0.08..1, bicubic) + flip, optionally a timm RandAugment/AutoAugment
    policy string (e.g. ``"rand-m9-mstd0.5-inc1"``). ``linear_probe``: RandomResizedCrop + flip only, since
    strong augmentation hurts a linear classifier on frozen features.
    """
    if mode not in MODES:
        raise ValueError(f"unknown mode {mode!r}; expected one of {MODES}")
    if auto_augment is not None and mode != "finetune":
        raise ValueError(
            f"auto_augment={auto_augment!r} is only supported with mode='finetune', got {mode!r}"
        )
    bicubic = T.InterpolationMode.BICUBIC
    if mode == "finetune" and auto_augment:
        from timm.data import create_transform  # optional path: only needed for RandAugment policies

        return create_transform(
            input_size=size,
            use_prefetcher=uint8,  # timm: uint8 CHW arrays, normalisation left to the consumer
            is_training=True,
            scale=(0.08, 1.0),
            hflip=0.5,
            color_jitter=None,
            auto_augment=auto_augment,
            interpolation="bicubic",
            mean=mean,
            std=std,
        )
    scale = (0.2, 1.0) if mode == "pretrain" else (0.08, 1.0)
    return T.Compose(
        [
            T.RandomResizedCrop(size, scale=scale, interpolation=bicubic),
            T.RandomHorizontalFlip(),
            *_to_tensor(mean, std, uint8),
        ]
    )


def build_eval_transform(
    size: int = 224,
    crop_pct: float = 0.875,
    mean: tuple[float, ...] = IMAGENET_MEAN,
    std: tuple[float, ...] = IMAGENET_STD,
    uint8: bool = False,
) -> Callable[[Image.Image], torch.Tensor]:
    """Resize the short side to ``size / crop_pct`` (bicubic) then centre-crop ``size``: the standard ImageNet eval."""
    if not 0 < crop_pct <= 1:
        raise ValueError(f"crop_pct must be in (0, 1], got {crop_pct}")
    return T.Compose(
        [
            T.Resize(int(size / crop_pct), interpolation=T.InterpolationMode.BICUBIC),
            T.CenterCrop(size),
            *_to_tensor(mean, std, uint8),
        ]
    )


def _to_tensor(mean, std, uint8: bool) -> list:
    if uint8:
        return [T.PILToTensor()]  # (3, H, W) uint8
    return [T.ToTensor(), T.Normalize(mean, std)]


def _check_split(root: Path, split: str) -> tuple[list[str], dict[str, int]]:
    """Validate ``root/split`` and return its classes, with errors that show the expected layout."""
    if not root.exists():
        raise FileNotFoundError(f"{root}: dataset root not found; expected {_layout(split)}")
    if not root.is_dir():
        raise DatasetFormatError(f"{root}: dataset root is not a directory; expected {_layout(split)}")
    folder = root / split
    if not folder.is_dir():
        present = sorted(p.name for p in root.iterdir() if p.is_dir())
        raise FileNotFoundError(
            f"{folder}: split folder not found (sub-folders present: {present}); expected {_layout(split)}"
        )
    try:
        classes, class_to_idx = find_classes(str(folder))
    except FileNotFoundError as e:
        raise DatasetFormatError(f"{folder}: no class sub-folders; expected {_layout(split)}") from e
    return classes, class_to_idx


class ImageFolderDictDataset(Dataset):
    """torchvision ``ImageFolder`` that returns ``{"image", "label"}`` dicts, the batch format used in vitlab.

    With ``boxes`` (``decode="device"``), a sample is the file instead: ``{"encoded": uint8 bytes, "box": (top,
    left, height, width), "flip", "label", "path"}``; ``boxes(image) -> (box, flip)`` sees the lazily opened image
    (its size, read from the header; nothing is decoded).
    """

    def __init__(self, root: str | Path, split: str, transform: Callable[[Image.Image], Any] | None = None,
                 boxes: Callable[[Image.Image], tuple[list[int], bool]] | None = None):
        root = Path(root)
        _check_split(root, split)
        folder = root / split
        try:
            self.folder = ImageFolder(str(folder), transform=transform, loader=load_rgb)
        except FileNotFoundError as e:  # a class folder without any image file
            raise DatasetFormatError(
                f"{folder}: {e}; expected {_layout(split)} with image files ending in {', '.join(IMG_EXTENSIONS)}"
            ) from e
        self.classes: list[str] = self.folder.classes
        self.class_to_idx: dict[str, int] = self.folder.class_to_idx
        self.boxes = boxes

    def __len__(self) -> int:
        return len(self.folder)

    def __getitem__(self, index: int) -> dict[str, Any]:
        if self.boxes is not None:
            return self._encoded(index)
        image, label = self.folder[index]
        return {"image": image, "label": label}

    def _encoded(self, index: int) -> dict[str, Any]:
        path, label = self.folder.samples[index]
        try:
            with Image.open(path) as im:  # the header only
                box, flip = self.boxes(im)
        except OSError as err:
            raise DatasetFormatError(f"{path}: not a readable image ({err})") from err
        data = torch.frombuffer(bytearray(Path(path).read_bytes()), dtype=torch.uint8)
        return {_ENCODED: data, "box": torch.tensor(box, dtype=torch.int64), "flip": bool(flip), "label": label,
                "path": path}


def _train_boxes(scale: tuple[float, float]) -> Callable[[Image.Image], tuple[list[int], bool]]:
    """RandomResizedCrop's box and RandomHorizontalFlip's coin, drawn as the worker path draws them."""
    ratio = (3.0 / 4.0, 4.0 / 3.0)

    def draw(im: Image.Image) -> tuple[list[int], bool]:
        top, left, h, w = T.RandomResizedCrop.get_params(im, scale, ratio)
        return [top, left, h, w], bool(torch.rand(1) < 0.5)

    return draw


def _eval_boxes(crop_pct: float) -> Callable[[Image.Image], tuple[list[int], bool]]:
    """The centred region that resize(short side = size / crop_pct) + centre-crop(size) keeps."""

    def draw(im: Image.Image) -> tuple[list[int], bool]:
        w, h = im.size
        side = max(1, round(min(w, h) * crop_pct))
        return [(h - side) // 2, (w - side) // 2, side, side], False

    return draw


def collate_encoded(samples: list[dict[str, Any]]) -> dict[str, Any]:
    """File bytes stay a list (their lengths differ); boxes, flips and labels are stacked."""
    return {_ENCODED: [s[_ENCODED] for s in samples], "box": torch.stack([s["box"] for s in samples]),
            "flip": torch.tensor([s["flip"] for s in samples]), "label": torch.tensor([s["label"] for s in samples]),
            "path": [s["path"] for s in samples]}


def decode_crops(data: list[torch.Tensor], boxes: torch.Tensor, flips: torch.Tensor, size: int,
                 device: torch.device | str, paths: list[str] | None = None) -> torch.Tensor:
    """Decode a batch of encoded images on ``device`` and crop-resize-flip each: ``(B, 3, size, size)`` float in [0, 1].

    ``data`` and ``boxes`` stay on the host (no device value is read back). JPEGs are decoded in one batched
    ``decode_jpeg`` call on ``device``; other formats on the host. The resize is bicubic with antialiasing (as
    PIL's, which the worker path uses), so the two paths agree up to interpolation rounding.
    """
    device = torch.device(device)
    is_jpeg = [bool(d.numel() > 2 and int(d[0]) == 0xFF and int(d[1]) == 0xD8) for d in data]
    jpegs = [d for d, j in zip(data, is_jpeg, strict=True) if j]
    from torchvision.io import ImageReadMode, decode_image, decode_jpeg

    try:
        decoded = iter(decode_jpeg(jpegs, mode=ImageReadMode.RGB, device=device) if jpegs else [])
    except RuntimeError as err:
        names = paths or ["<batch>"]
        raise DatasetFormatError(f"{names[0]} ... ({len(jpegs)} JPEGs of this batch): decoding failed ({err}); "
                                 "run `vitlab data check imagenet <root>` to find the file") from err
    out = []
    for k, (d, j, (top, left, h, w)) in enumerate(zip(data, is_jpeg, boxes.tolist(), strict=True)):
        img = next(decoded) if j else decode_image(d, mode=ImageReadMode.RGB).to(device)
        crop = img[None, :, top:top + h, left:left + w].float()
        if crop.shape[-2:] != (h, w):
            where = paths[k] if paths else f"image {k}"
            raise DatasetFormatError(f"{where}: decoded to {tuple(img.shape[-2:])}, smaller than its header said")
        out.append(F.interpolate(crop, size=(size, size), mode="bicubic", antialias=True, align_corners=False))
    x = torch.cat(out).clamp_(0.0, 255.0).div_(255.0)
    flips = flips.to(device, non_blocking=True)
    return torch.where(flips[:, None, None, None], x.flip(-1), x)


class ImageFolderDataModule(VitlabDataModule):
    """ImageNet-layout classification DataModule; batches are ``{"image": (B,3,H,W) float, "label": (B,) int64}``.

    With ``device_normalize=True`` (default) the workers decode, crop and flip only and hand over
    ``(3, H, W)`` uint8 tensors; ImageNet normalisation to fp32 runs batched on the device
    (:class:`~vitlab.core.data.VitlabDataModule`). ``device_normalize=False`` normalises in the workers (the
    loaders then yield normalised floats directly).

    ``mode`` selects the train augmentation (see :func:`build_train_transform`); validation/test/predict use the
    ``val_split`` with :func:`build_eval_transform`. Class indices come from the sorted train class folders,
    and the val split must contain exactly the same classes so labels cannot silently disagree.
    """

    def __init__(
        self,
        root: str,
        mode: str = "finetune",
        size: int = 224,
        batch_size: int = 64,
        num_workers: int = 8,
        train_split: str = "train",
        val_split: str = "val",
        pin_memory: bool = True,
        auto_augment: str | None = None,
        crop_pct: float = 0.875,
        drop_last: bool = True,
        device_normalize: bool = True,
        seed: int = 0,
        decode: str = "workers",
    ) -> None:
        if decode not in DECODES:
            raise ValueError(f"ImageFolderDataModule: decode must be one of {DECODES}, got {decode!r}")
        if decode == "device" and auto_augment is not None:
            raise ValueError("ImageFolderDataModule: decode='device' crops and flips on the device; auto_augment "
                             "policies run on PIL images in the workers (use decode='workers')")
        if mode not in MODES:
            raise ValueError(f"ImageFolderDataModule: unknown mode {mode!r}; expected one of {MODES}")
        if auto_augment is not None and mode != "finetune":
            raise ValueError(
                f"ImageFolderDataModule: auto_augment is only supported with mode='finetune', got {mode!r}"
            )
        super().__init__(batch_size=batch_size, num_workers=num_workers, seed=seed, normalize=device_normalize,
                         uint8_transfer=device_normalize, pin_memory=None if pin_memory else False)
        self.save_hyperparameters()
        self.root = Path(root)
        self.mode = mode
        self.size = size
        self.train_split = train_split
        self.val_split = val_split
        self.auto_augment = auto_augment
        self.crop_pct = crop_pct
        self.drop_last = bool(drop_last)
        self.device_normalize = bool(device_normalize)
        self.decode = decode
        self._classes: list[str] | None = None

    @property
    def classes(self) -> list[str]:
        """Class folder names of the train split (sorted); readable before ``setup`` so models can be sized."""
        if self._classes is None:
            self._classes, _ = _check_split(self.root, self.train_split)
        return self._classes

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    def make_dataset(self, split: str) -> ImageFolderDictDataset | None:
        device = self.decode == "device"
        if split == "train":
            boxes = _train_boxes((0.2, 1.0) if self.mode == "pretrain" else (0.08, 1.0)) if device else None
            ds = ImageFolderDictDataset(self.root, self.train_split, build_train_transform(
                self.mode, self.size, self.auto_augment, uint8=self.device_normalize), boxes=boxes)
            self._classes = ds.classes
            return ds
        if split != "val":  # ImageNet has no labelled test set: test and predict run on the validation split
            if self.val_set is None:
                self.val_set = self.make_dataset("val")
            return self.val_set
        val = ImageFolderDictDataset(self.root, self.val_split,
                                     build_eval_transform(self.size, self.crop_pct, uint8=self.device_normalize),
                                     boxes=_eval_boxes(self.crop_pct) if device else None)
        if self._classes is None and not (self.root / self.train_split).is_dir():
            self._classes = val.classes  # evaluation-only copy of the dataset: val defines the classes
        if val.classes != self.classes:
            only_train = sorted(set(self.classes) - set(val.classes))[:10]
            only_val = sorted(set(val.classes) - set(self.classes))[:10]
            raise DatasetFormatError(
                f"{self.root / self.val_split}: class folders differ from {self.root / self.train_split} "
                f"(only in train: {only_train}, only in val: {only_val}); both splits must hold the same "
                f"classes so that label indices agree ({_layout('<split>')})"
            )
        return val

    # -- decode="device" ---------------------------------------------------------------------------------------
    def collate_fn(self, split: str) -> Callable[[list[Any]], Any] | None:
        return collate_encoded if self.decode == "device" else None

    def transfer_batch_to_device(self, batch: Any, device: torch.device, dataloader_idx: int) -> Any:
        """The encoded bytes and boxes stay on the host (the decoder reads them there); the rest moves."""
        if isinstance(batch, dict) and _ENCODED in batch:
            host = {k: batch[k] for k in (_ENCODED, "box", "path")}
            rest = super().transfer_batch_to_device({k: v for k, v in batch.items() if k not in host}, device,
                                                    dataloader_idx)
            return {**rest, **host}
        return super().transfer_batch_to_device(batch, device, dataloader_idx)

    def on_after_batch_transfer(self, batch: Any, dataloader_idx: int) -> Any:
        if isinstance(batch, dict) and _ENCODED in batch:
            image = decode_crops(batch[_ENCODED], batch["box"], batch["flip"], self.size, batch["label"].device,
                                 batch.get("path"))
            batch = {"image": image, "label": batch["label"]}
        return super().on_after_batch_transfer(batch, dataloader_idx)
