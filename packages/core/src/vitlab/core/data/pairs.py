"""Image pairs from the user's own files: two glob patterns, or a two-column text file.

Batches use the stereo layout of vitlab (``image`` = first / left view, ``right`` = second / right view,
``(B, 3, H, W)``, ImageNet-normalised on the device by :class:`~vitlab.core.data.VitlabDataModule`), so any two-view method (``vitlab.pretrain.CroCo`` cross-view
completion pre-training, stereo models) reads them like SyntheticScenes' ``[image, right]`` modalities.

Listing (:func:`list_image_pairs`):

* ``left='dir/*_L.png', right='dir/*_R.png'``: both patterns are expanded and sorted; the i-th files form a
  pair, so the counts must match;
* ``pairs_file='pairs.txt'``: one pair per line, ``<first> <second>`` separated by white space; ``#`` starts a
  comment; relative paths are relative to the text file's folder.

Crops (train): both views are resized to the first view's size when they differ, the short side is scaled up to
the crop if needed, and ONE random window is cut from both (a rectified stereo pair stays rectified). Colour
jitter is drawn independently per view (CroCo's asymmetric colour augmentation "acolor" [code]; its strengths here,
``ColorJitter(0.4, 0.4, 0.4, 0.1)``, are an [inferred] default, a named option). Evaluation: centre window.
"""

from __future__ import annotations

import glob
from pathlib import Path

import torch
import torch.nn.functional as F
from torch.utils.data import Dataset
from torchvision import transforms as T

from vitlab.core.data.base import VitlabDataModule
from vitlab.core.data.io import DatasetFormatError, read_image_tensor

__all__ = ["ImagePairDataModule", "ImagePairs", "list_image_pairs"]


def _expand(pattern: str, what: str) -> list[Path]:
    files = sorted(Path(p) for p in glob.glob(str(Path(pattern).expanduser())) if Path(p).is_file())
    if not files:
        raise FileNotFoundError(f"{what} pattern {pattern!r} matches no file")
    return files


def _read_pairs_file(path: str | Path) -> list[tuple[Path, Path]]:
    p = Path(path).expanduser()
    if not p.is_file():
        raise FileNotFoundError(f"{p}: pairs file not found; expected a text file with '<first> <second>' per line")
    pairs = []
    for n, line in enumerate(p.read_text().splitlines(), start=1):
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        cols = line.split()
        if len(cols) != 2:
            raise DatasetFormatError(f"{p}:{n}: expected 2 columns '<first> <second>', found {len(cols)}: {line!r}")
        a, b = ((q if q.is_absolute() else p.parent / q) for q in map(Path, cols))
        for f in (a, b):
            if not f.is_file():
                raise FileNotFoundError(f"{p}:{n}: image {f} not found")
        pairs.append((a, b))
    if not pairs:
        raise DatasetFormatError(f"{p}: no pairs; expected '<first> <second>' per line")
    return pairs


def list_image_pairs(left: str | None = None, right: str | None = None,
                     pairs_file: str | None = None) -> list[tuple[Path, Path]]:
    """Pairs from two glob patterns (sorted, matched by rank) or from a two-column text file (module docstring)."""
    if pairs_file is not None:
        if left is not None or right is not None:
            raise ValueError("give either pairs_file or left + right patterns, not both")
        return _read_pairs_file(pairs_file)
    if left is None or right is None:
        raise ValueError("image pairs need left + right glob patterns or a pairs_file")
    a, b = _expand(left, "left"), _expand(right, "right")
    if len(a) != len(b):
        more, fewer = (a, b) if len(a) > len(b) else (b, a)
        extra = ", ".join(str(f) for f in more[len(fewer):][:5]) + (" ..." if len(more) - len(fewer) > 5 else "")
        raise DatasetFormatError(f"left pattern {left!r} matches {len(a)} files but right pattern {right!r} "
                                 f"matches {len(b)}; the i-th files of each (sorted) form a pair; unpaired: {extra}")
    return list(zip(a, b))


class ImagePairs(Dataset):
    """Two views per sample: ``{"image", "right", "index"}``, float in [0, 1] (see the module docstring).

    Args:
        pairs: ``(first, second)`` image paths (:func:`list_image_pairs`).
        size: crop ``[h, w]`` (or one int for a square); ``None`` = the full first-view size.
        train: random window + independent colour jitter; else the centre window, no jitter.
        color_jitter: ``(brightness, contrast, saturation, hue)`` per view at train time; ``None`` = off.
    """

    def __init__(self, pairs: list[tuple[Path, Path]], size: int | list[int] | tuple[int, int] | None = 224,
                 train: bool = True, color_jitter: tuple[float, float, float, float] | list[float] | None = (
                     0.4, 0.4, 0.4, 0.1)) -> None:
        if not pairs:
            raise ValueError("ImagePairs: no pairs")
        self.pairs = [(Path(a), Path(b)) for a, b in pairs]
        if isinstance(size, int):
            size = (size, size)
        self.size = None if size is None else (int(size[0]), int(size[1]))
        self.train = bool(train)
        self.jitter = T.ColorJitter(*color_jitter) if (train and color_jitter) else None

    def __len__(self) -> int:
        return len(self.pairs)

    @staticmethod
    def _load(path: Path) -> torch.Tensor:
        return read_image_tensor(path, uint8=False)

    def _window(self, h: int, w: int) -> tuple[int, int, int, int]:
        ch, cw = self.size
        if self.train:
            return int(torch.randint(0, h - ch + 1, ())), int(torch.randint(0, w - cw + 1, ())), ch, cw
        return (h - ch) // 2, (w - cw) // 2, ch, cw

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        a_path, b_path = self.pairs[index]
        a, b = self._load(a_path), self._load(b_path)
        if b.shape != a.shape:
            b = F.interpolate(b[None], size=a.shape[-2:], mode="bilinear", align_corners=False, antialias=True)[0]
        views = torch.stack([a, b])
        if self.size is not None:
            h, w = views.shape[-2:]
            scale = max(self.size[0] / h, self.size[1] / w)
            if scale > 1:  # too small for the window: scale up (both views, same factor)
                views = F.interpolate(views, size=(max(self.size[0], round(h * scale)), max(self.size[1], round(w * scale))),
                                      mode="bilinear", align_corners=False)
            i, j, ch, cw = self._window(*views.shape[-2:])
            views = views[..., i:i + ch, j:j + cw]
        if self.jitter is not None:
            views = torch.stack([self.jitter(v) for v in views])  # independent draws: asymmetric colour
        views = views.clamp(0, 1)
        return {"image": views[0].contiguous(), "right": views[1].contiguous(), "index": torch.tensor(index)}


class ImagePairDataModule(VitlabDataModule):
    """Image pairs from glob patterns or a pairs file, for two-view training (e.g. CroCo pre-training).

    Args:
        left, right: glob patterns of the first / second views (``'dir/*_L.png'``, ``'dir/*_R.png'``).
        pairs_file: instead of the patterns, a text file with ``<first> <second>`` per line.
        val_left, val_right, val_pairs_file: the same for an optional validation split.
        size: crop ``[h, w]`` (or one int); a multiple of the model's patch size.
        batch_size, num_workers, seed: loader options.
        color_jitter: per-view train-time jitter ``(brightness, contrast, saturation, hue)``; ``null`` = off.
    """

    image_keys = ("image", "right")

    def __init__(self, left: str | None = None, right: str | None = None, pairs_file: str | None = None,
                 val_left: str | None = None, val_right: str | None = None, val_pairs_file: str | None = None,
                 size: int | list[int] = 224, batch_size: int = 16, num_workers: int = 4,
                 color_jitter: list[float] | None = (0.4, 0.4, 0.4, 0.1), seed: int = 0) -> None:
        super().__init__(batch_size=batch_size, num_workers=num_workers, seed=seed)
        self.save_hyperparameters()

    def make_dataset(self, split: str) -> ImagePairs | None:
        hp = self.hparams
        if split == "train":
            return ImagePairs(list_image_pairs(hp.left, hp.right, hp.pairs_file), hp.size, True, hp.color_jitter)
        if split == "val" and (hp.val_pairs_file is not None or hp.val_left is not None):
            return ImagePairs(list_image_pairs(hp.val_left, hp.val_right, hp.val_pairs_file), hp.size, False)
        return None
