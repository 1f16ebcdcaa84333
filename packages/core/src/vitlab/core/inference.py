"""Inference on one image from Python, for every single-image vitlab module: ``predict_image(model, image)``.

The module (or its ``vitlab fit`` checkpoint) runs its own ``predict_step`` on the image, as ``vitlab predict``
does, and every map comes back at the image's own size as a numpy array (the same as the writers store).
"""

from __future__ import annotations

import importlib
import os
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from torch import Tensor

from vitlab.core.checkpoint_io import load_checkpoint_file
from vitlab.core.data.constants import normalize_image
from vitlab.core.data.io import array_to_image_tensor, read_image_tensor
from vitlab.core.writers import at_input_size

__all__ = ["ImageLike", "load_module", "predict_image", "to_image_tensor"]

ImageLike = str | os.PathLike | Image.Image | np.ndarray | torch.Tensor


def to_image_tensor(x: ImageLike, what: str = "image") -> Tensor:
    """Path, PIL image, ``(H, W[, C])`` array or ``(C, H, W)`` / ``(1, C, H, W)`` tensor -> ``(3, H, W)`` float32.

    Files go through core's reader (16-bit kept); uint8 arrays/tensors are divided by 255, uint16 arrays by
    65535; float input is taken as [0, 1].
    """
    if isinstance(x, (str, os.PathLike)):
        return read_image_tensor(x, uint8=False)
    if isinstance(x, Image.Image):
        if x.mode.startswith("I") or x.mode == "F":
            return array_to_image_tensor(np.asarray(x).astype(np.uint16 if x.mode.startswith("I") else np.float32),
                                         what)
        return array_to_image_tensor(np.asarray(x.convert("RGB"), dtype=np.uint8), what)
    if isinstance(x, np.ndarray):
        return array_to_image_tensor(x, what)
    if isinstance(x, torch.Tensor):
        t = x.detach()
        if t.ndim == 4 and t.shape[0] == 1:
            t = t[0]
        if t.ndim == 2:
            t = t[None]
        if t.ndim != 3 or t.shape[0] not in (1, 3, 4):
            raise ValueError(f"{what}: expected a (C, H, W) tensor with C in 1/3/4, got shape {tuple(x.shape)}")
        t = t[:3].float().div(255.0) if t.dtype == torch.uint8 else t[:3].float()
        return t.expand(3, -1, -1).contiguous() if t.shape[0] == 1 else t.contiguous()
    raise TypeError(f"{what}: expected a path, PIL image, numpy array or tensor, got {type(x).__name__}")


def load_module(model: Any) -> torch.nn.Module:
    """A LightningModule as given, or the one a ``vitlab fit`` checkpoint names (``_class_path``), on the CPU."""
    if isinstance(model, (str, os.PathLike)):
        from vitlab.core.tasks import VitlabModule

        p = Path(model)
        if not p.is_file():
            raise FileNotFoundError(f"{p}: checkpoint not found")
        hparams = load_checkpoint_file(p, verify=False).get("hyper_parameters") or {}  # verified when loaded
        if "_class_path" not in hparams:
            raise ValueError(f"{p}: the checkpoint does not name its module class (expected one written by "
                             "`vitlab fit`); load it with <YourModule>.load_from_checkpoint and pass the module")
        module_name, _, name = str(hparams["_class_path"]).rpartition(".")
        try:
            cls = getattr(importlib.import_module(module_name), name)
        except (ImportError, AttributeError) as e:
            raise ValueError(f"{p}: its module class {hparams['_class_path']!r} does not import ({e})") from e
        if not (isinstance(cls, type) and issubclass(cls, VitlabModule)):
            raise ValueError(f"{p}: {hparams['_class_path']!r} is not a vitlab module class")
        return cls.load_from_checkpoint(p, map_location="cpu")
    if isinstance(model, torch.nn.Module):
        return model
    raise TypeError(f"model: expected a LightningModule or a checkpoint path, got {type(model).__name__}")


@torch.no_grad()
def predict_image(model: Any, image: ImageLike, size: int | tuple[int, int] | None = None) -> dict[str, Any]:
    """The module's ``predict_step`` outputs for one image, maps at the image's own size.

    Args:
        model: a vitlab module with a ``predict_step`` on ``{"image"}`` batches, or its checkpoint path.
        image: a file path, PIL image, ``(H, W[, C])`` array or ``(C, H, W)`` tensor; any size.
        size: resize to ``size`` (int: square) for the network (the model's ``img_size`` when it needs one).

    Returns ``{key: array}`` without the batch dimension: maps of the network's input size are resized back to
    ``H x W`` (nearest for integer ids, bilinear otherwise); other outputs (class probabilities) as they are.
    """
    module = load_module(model)
    x = to_image_tensor(image)
    hw = tuple(x.shape[-2:])
    if size is not None:
        size = (size, size) if isinstance(size, int) else tuple(size)
        x = torch.nn.functional.interpolate(x[None], size=size, mode="bilinear", align_corners=False,
                                            antialias=True)[0].clamp_(0.0, 1.0)
    x = x.mul(255.0).round_().div_(255.0)  # the 8 bits `vitlab predict` sends to the device
    was_training = module.training
    module.eval()
    try:
        dev = next(module.parameters(), torch.empty(0)).device
        batch = {"image": normalize_image(x[None].to(dev)), "orig_size": torch.tensor([hw])}
        out = module.predict_step(batch, 0)
    finally:
        module.train(was_training)
    net_hw = tuple(x.shape[-2:])
    result: dict[str, Any] = {}
    for k, v in (out.items() if isinstance(out, dict) else [("output", out)]):
        if not isinstance(v, Tensor):
            continue
        if v.ndim >= 3 and tuple(v.shape[-2:]) == net_hw:
            result[k] = at_input_size(v, batch, 0, nearest=not v.is_floating_point())
        else:
            result[k] = v[0].detach().cpu().numpy()
    return result
