"""Inference on one's own image pairs: ``vitlab predict`` over globs or a pairs file, and one Python call.

* :class:`StereoPairsDataModule` (``--data vitlab.stereo.StereoPairsDataModule --data.left 'dir/*_L.png'
  --data.right 'dir/*_R.png'`` or ``--data.pairs pairs.txt``) reads any pair of same-size images: odd sizes,
  greyscale (replicated to 3 channels), 16-bit, RGBA (alpha dropped), multi-megapixel.
* :func:`predict_disparity` (``predict_disparity(model, left, right) -> (H, W) float32``) takes file paths,
  PIL images, ``(H, W[, C])`` arrays or ``(C, H, W)`` tensors and a :class:`StereoMatching` module or its
  checkpoint.
* ``scale`` runs the network on both views resized by ``scale`` (antialiased bilinear) and brings the
  disparity back to the input's ``H x W`` (bilinear), multiplied by the x-factor ``W / w`` (= ``1 / scale``
  when ``W * scale`` is whole). A network covers the disparities it was trained on: pick
  ``scale = trained max disparity / largest disparity in your frames`` (:func:`suggest_scale`).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from vitlab.core.data import (
    DatasetFormatError,
    contract_of,
    declares,
    image_size,
    list_image_pairs,
    normalize_image,
    read_image_tensor,
    unique_names,
)
from vitlab.core.inference import ImageLike, load_module, to_image_tensor

from .data import StereoDataModule
from .datasets import StereoPairs

__all__ = [
    "StereoImagePairs",
    "StereoPairsDataModule",
    "predict_disparity",
    "read_stereo_image",
    "resolve_pairs",
    "suggest_scale",
]

_WHAT = "an RGB, RGBA, greyscale (8- or 16-bit) or palette image"


# ---------------------------------------------------------------------------------------------------- images
@declares(contract_of(read_image_tensor, uint8=False))
def read_stereo_image(path: str | os.PathLike) -> torch.Tensor:
    """Any photo -> float32 ``(3, H, W)`` in [0, 1]: core's ``read_image_tensor(path, uint8=False)``.

    Greyscale is replicated to 3 channels, alpha dropped, palettes expanded; 16-bit greyscale keeps its
    precision (``v / 65535``). Float images are refused: they are ground truth, not photos.
    """
    return read_image_tensor(path, uint8=False)


# ---------------------------------------------------------------------------------------------------- pairs
def resolve_pairs(left: str | None = None, right: str | None = None,
                  pairs: str | None = None) -> list[tuple[str, Path, Path]]:
    """``[(name, left path, right path)]`` from two globs (matched in sorted order) or a pairs file.

    Listing is core's :func:`~vitlab.core.data.list_image_pairs`; raises ``FileNotFoundError`` / ``ValueError``
    naming the file(s) for no match, a count mismatch, a missing file or left/right images of different sizes.
    """
    if pairs is not None and (left is not None or right is not None):
        raise ValueError("give either `pairs` or `left` + `right`, not both")
    items = list_image_pairs(left, right, pairs_file=pairs)  # core: globs matched in sorted order, or a pairs file
    for lp, rp in items:
        sl, sr = image_size(lp), image_size(rp)
        if sl != sr:
            raise ValueError(f"{lp} ({sl[1]}x{sl[0]}) and {rp} ({sr[1]}x{sr[0]}): left and right sizes differ")
    return [(n, lp, rp) for n, (lp, rp) in zip(unique_names([lp for lp, _ in items]), items)]


def _sizes(pairs: Sequence[tuple]) -> set[tuple[int, int]]:
    return {image_size(p[1]) for p in pairs}


class StereoImagePairs(StereoPairs):
    """User image pairs without ground truth: ``{"image", "right": (3, H, W) in [0, 1], "name", "scale"}``.

    Args:
        left, right: glob patterns (or single files), matched in sorted order.
        pairs: a text file with two whitespace-separated columns ``left right`` (paths relative to it).
        scale: inference scale carried in each sample (see :func:`predict_disparity`).
    """

    layout = "left/right glob patterns or a two-column pairs file"

    def __init__(self, left: str | None = None, right: str | None = None, pairs: str | None = None,
                 scale: float = 1.0) -> None:
        super().__init__()
        if not scale > 0:
            raise ValueError(f"scale must be > 0, got {scale!r}")
        self.scale = float(scale)
        self.pairs = [(n, lp, rp, None, None) for n, lp, rp in resolve_pairs(left, right, pairs)]

    def __getitem__(self, index: int) -> dict:
        name, left, right, _, _ = self.pairs[index]
        sample = {"image": read_stereo_image(left), "right": read_stereo_image(right), "name": name,
                  "scale": self.scale}
        if sample["image"].shape != sample["right"].shape:
            raise DatasetFormatError(f"{left} and {right}: left/right sizes differ "
                                     f"{tuple(sample['image'].shape)} vs {tuple(sample['right'].shape)}")
        return sample


class StereoPairsDataModule(StereoDataModule):
    """``vitlab predict`` on one's own pairs: ``--data.left 'dir/*_L.png' --data.right 'dir/*_R.png'`` or
    ``--data.pairs pairs.txt``; predictions are named after the left image.

    Args:
        left, right, pairs: see :class:`StereoImagePairs` (files are listed and size-checked at construction).
        scale: inference scale (e.g. 0.5 for frames whose disparities exceed twice what the network was
            trained on); the disparity is written at the input's full size, in full-resolution pixels.
        batch_size: pairs per forward when every pair has the same size (otherwise one pair at a time).
        num_workers: loader workers.
    """

    def __init__(self, left: str | None = None, right: str | None = None, pairs: str | None = None,
                 scale: float = 1.0, batch_size: int = 1, num_workers: int = 0) -> None:
        dataset = StereoImagePairs(left, right, pairs, scale)
        if batch_size > 1 and len(_sizes(dataset.pairs)) > 1:
            batch_size = 1  # pairs of different sizes cannot share a batch
        super().__init__(predict_datasets=[dataset], eval_batch_size=batch_size, num_workers=num_workers)
        self.uint8_transfer = False  # one's own photos may be 16-bit: keep their precision to the device
        self.left, self.right, self.pairs, self.scale = left, right, pairs, float(scale)
        self.dataset = dataset


# ---------------------------------------------------------------------------------------------------- API
def suggest_scale(trained_max_disparity: float, max_disparity: float) -> float:
    """Inference scale that brings a frame's largest disparity within the trained range (never above 1)."""
    if not trained_max_disparity > 0 or not max_disparity > 0:
        raise ValueError(f"disparities must be > 0, got {trained_max_disparity!r} and {max_disparity!r}")
    return min(1.0, float(trained_max_disparity) / float(max_disparity))


def _load_module(model):
    """A stereo LightningModule (anything with ``predict_disparity``), or one loaded from its checkpoint
    (core's :func:`~vitlab.core.inference.load_module`: the class the checkpoint names)."""
    module = load_module(model) if isinstance(model, (str, os.PathLike, torch.nn.Module)) else model
    if isinstance(module, torch.nn.Module) and callable(getattr(module, "predict_disparity", None)):
        return module
    raise TypeError(f"model: expected a StereoMatching module or a checkpoint path, got {type(model).__name__}")


@torch.no_grad()
def predict_disparity(model, left: ImageLike, right: ImageLike, scale: float = 1.0,
                      tiled: bool | None = None) -> np.ndarray:
    """Disparity of the left view, ``(H, W)`` float32 in pixels of the input resolution.

    Args:
        model: a :class:`StereoMatching` (or subclass) module, or the path of its checkpoint.
        left, right: file paths, PIL images, ``(H, W[, C])`` uint8/uint16/float arrays or ``(C, H, W)`` tensors
            (uint8 or float in [0, 1]) of the same size; any size.
        scale: run the network at ``scale`` x the input size (see the module docstring).
        tiled: ``None`` = the module's own setting (tiled when its ``tile_size`` is set), ``False`` = one
            full-frame forward (padded to a multiple of 32), ``True`` = tiles of ``tile_size`` (or the
            network's ``img_size`` when unset).
    """
    module = _load_module(model)
    lt, rt = to_image_tensor(left, "left"), to_image_tensor(right, "right")
    if lt.shape != rt.shape:
        raise ValueError(f"left {tuple(lt.shape)} and right {tuple(rt.shape)} differ in size")
    was_training = module.training
    module.eval()
    try:
        dev = next(module.parameters(), torch.empty(0)).device
        lt = normalize_image(lt[None].to(dev))
        rt = normalize_image(rt[None].to(dev))
        disp, _ = module.predict_disparity(lt, rt, scale=scale, tiled=tiled)
    finally:
        module.train(was_training)
    return disp[0, 0].float().cpu().numpy().astype(np.float32, copy=False)
