"""``vitlab predict`` output of the core tasks: one file per image, in formats other tools read.

* semantic segmentation (``{"semantic": (B,H,W)}``): ``<name>.png``, 8-bit class ids (16-bit above 255
  classes), plus ``<name>_color.png``, a palette PNG (VOC palette by default, ``palette: cityscapes`` for the
  19 Cityscapes train ids; its pixel values are the ids too); ``label_ids: true`` adds ``<name>_labelIds.png``,
  Cityscapes train ids mapped to label ids (the format of the Cityscapes test server);
* depth (``{"depth": (B,1,H,W)}``): ``<name>_depth.png`` 16-bit in millimetres (NYU / mmseg convention,
  0 = invalid) and ``<name>_depth.npy`` float32 metres;
* classification (``{"label", "probs"}``): one ``predictions.csv`` (name, class id, probability).

Names come from the batch's ``name`` (slashes become ``__``) or ``index`` (``000042``), else
``<batch>_<i>``. Files go to ``<run folder>/predictions`` unless ``output_dir`` says otherwise. When the
batch carries ``orig_size`` (:class:`~vitlab.core.data.ImageFolderPredictDataModule` resizes images for the
network), maps are brought back to that size (nearest for ids, bilinear otherwise) before they are written.

The CLI adds a module's ``default_writer`` (a class attribute naming its writer class) to ``vitlab predict``
when the config has no prediction writer; a module without one stops ``predict`` with an error instead of
computing predictions and writing nothing.
"""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any

import numpy as np
import torch
from lightning.pytorch import LightningModule, Trainer
from lightning.pytorch.callbacks import BasePredictionWriter
from PIL import Image
from torch import Tensor

from vitlab.core.data.colormaps import PALETTES, colorize, palette
from vitlab.core.data.io import write_png16
from vitlab.core.data.labels import CITYSCAPES_LABEL_TO_TRAIN_ID

__all__ = ["DensePredictionWriter", "PredictionWriter", "WRITABLE_KEYS", "at_input_size", "sample_names",
           "save_depth", "save_labels"]

#: prediction keys this writer knows how to store
WRITABLE_KEYS = ("semantic", "depth", "label")


def sample_names(prediction: dict[str, Any], batch: Any, batch_idx: int, n: int) -> list[str]:
    """Unique, file-safe names for the ``n`` samples of a batch."""
    for source in (prediction, batch if isinstance(batch, dict) else {}):
        names = source.get("name")
        if names is not None:
            return [str(v).replace("/", "__").replace("\\", "__") for v in names]
        index = source.get("index")
        if index is not None:
            return [f"{int(v):06d}" for v in index]
    return [f"{batch_idx:06d}_{i}" for i in range(n)]


def at_input_size(x: Tensor, batch: Any, i: int, nearest: bool = False) -> np.ndarray:
    """Sample ``i``'s ``(..., h, w)`` map at the size the batch says its image had on disk (``orig_size``),
    as a numpy array; unchanged when the batch has no ``orig_size`` or the sizes already agree."""
    t = x[i].detach()
    sizes = batch.get("orig_size") if isinstance(batch, dict) else None
    if sizes is not None:
        h, w = (int(v) for v in sizes[i])
        if tuple(t.shape[-2:]) != (h, w):
            lead = t.shape[:-2]
            flat = t.reshape(1, -1, *t.shape[-2:])
            if nearest:
                flat = torch.nn.functional.interpolate(flat.float(), size=(h, w), mode="nearest").to(t.dtype)
            else:
                flat = torch.nn.functional.interpolate(flat.float(), size=(h, w), mode="bilinear",
                                                       align_corners=False)
            t = flat.reshape(*lead, h, w)
    return t.cpu().numpy()


def save_labels(out: Path, stem: str, ids: np.ndarray, colours: np.ndarray) -> None:
    """``<stem>.png`` class ids (8-bit, 16-bit above 256 classes) and ``<stem>_color.png``, a palette PNG whose
    pixel values are the same ids (ids past the palette, e.g. 255 = ignore, are drawn white)."""
    ids = np.asarray(ids).astype(np.int64)
    if len(colours) > 256:
        write_png16(out / f"{stem}.png", ids.astype(np.uint16))
        Image.fromarray(colours[np.clip(ids, 0, len(colours) - 1)]).save(out / f"{stem}_color.png")
        return
    Image.fromarray(ids.astype(np.uint8)).save(out / f"{stem}.png")
    lut = np.full((256, 3), 255, dtype=np.uint8)
    lut[:len(colours)] = colours
    im = Image.fromarray(ids.astype(np.uint8), mode="P")
    im.putpalette(lut.reshape(-1).tolist())
    im.save(out / f"{stem}_color.png")


def save_depth(out: Path, stem: str, depth: np.ndarray) -> None:
    """``<stem>.npy`` float32 metres, ``<stem>.png`` 16-bit millimetres (0 = invalid) and ``<stem>_color.png``."""
    d = np.asarray(depth, dtype=np.float32).reshape(depth.shape[-2:])
    np.save(out / f"{stem}.npy", d)
    mm = np.clip(np.round(np.nan_to_num(d, nan=0.0, posinf=0.0) * 1000.0), 0, 65535).astype(np.uint16)
    write_png16(out / f"{stem}.png", mm)
    finite = d[np.isfinite(d)]
    vmax = float(finite.max()) if finite.size and finite.max() > 0 else 1.0
    Image.fromarray(colorize(d, vmin=0.0, vmax=vmax)).save(out / f"{stem}_color.png")


class PredictionWriter(BasePredictionWriter):
    """Base of the per-batch writers: the output folder, sample names and a closing count line.

    Args:
        output_dir: destination folder; default ``<run folder>/predictions``.
    """

    def __init__(self, output_dir: str | None = None) -> None:
        super().__init__(write_interval="batch")
        self.output_dir = output_dir
        self.written = 0

    def _dir(self, trainer: Trainer) -> Path:
        out = Path(self.output_dir) if self.output_dir else Path(trainer.default_root_dir) / "predictions"
        out.mkdir(parents=True, exist_ok=True)
        return out

    def on_predict_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if trainer.is_global_zero:
            print(f"vitlab: wrote {self.written} predictions to {self._dir(trainer)}", flush=True)


class DensePredictionWriter(PredictionWriter):
    """Writes the predictions of core task modules (see the module docstring).

    Args:
        output_dir: destination folder; default ``<run folder>/predictions``.
        palette: colours of ``<name>_color.png``: ``voc`` or ``cityscapes``.
        label_ids: also write ``<name>_labelIds.png``, train ids 0..18 mapped to Cityscapes label ids.
    """

    def __init__(self, output_dir: str | None = None, palette: str = "voc", label_ids: bool = False) -> None:
        super().__init__(output_dir)
        if palette not in PALETTES:
            raise ValueError(f"{type(self).__name__}: palette must be one of {PALETTES}, got {palette!r}")
        self.palette = palette
        self.label_ids = bool(label_ids)
        self._csv: Path | None = None

    def write_on_batch_end(self, trainer: Trainer, pl_module: LightningModule, prediction: Any,
                           batch_indices, batch: Any, batch_idx: int, dataloader_idx: int = 0) -> None:
        if not isinstance(prediction, dict) or not any(k in prediction for k in WRITABLE_KEYS):
            keys = sorted(prediction) if isinstance(prediction, dict) else type(prediction).__name__
            raise ValueError(f"{type(self).__name__}: predictions of {type(pl_module).__name__} have none of "
                             f"{WRITABLE_KEYS} (got {keys})")
        out = self._dir(trainer)
        first = next(prediction[k] for k in WRITABLE_KEYS if k in prediction)
        names = sample_names(prediction, batch, batch_idx, len(first))
        if "semantic" in prediction:
            sem = prediction["semantic"]
            num_classes = int(getattr(pl_module, "num_classes", int(sem.max()) + 1))
            colours = palette(self.palette, num_classes)
            for i, name in enumerate(names):
                ids = at_input_size(sem, batch, i, nearest=True)
                save_labels(out, name, ids, colours)
                if self.label_ids:
                    Image.fromarray(_LABEL_ID_LUT[np.clip(ids, 0, 255)]).save(out / f"{name}_labelIds.png")
                self.written += 1
        if "depth" in prediction:
            for i, name in enumerate(names):
                save_depth(out, f"{name}_depth", at_input_size(prediction["depth"].float(), batch, i))
                self.written += 1
        if "label" in prediction and "semantic" not in prediction:
            labels = prediction["label"].detach().cpu().numpy().reshape(-1)
            probs = prediction.get("probs")
            top = probs.detach().float().max(-1).values.cpu().numpy() if probs is not None else [float("nan")] * len(labels)
            path = out / "predictions.csv"
            new = self._csv != path
            with open(path, "w" if new else "a", newline="") as f:
                writer = csv.writer(f)
                if new:
                    writer.writerow(["name", "class", "probability"])
                for name, c, p in zip(names, labels, top):
                    writer.writerow([name, int(c), f"{float(p):.6f}"])
                    self.written += 1
            self._csv = path


#: Cityscapes train id -> label id (ids without a label id, e.g. 255, become 0 = unlabeled)
_LABEL_ID_LUT = np.zeros(256, dtype=np.uint8)
for _label, _train in CITYSCAPES_LABEL_TO_TRAIN_ID.items():
    _LABEL_ID_LUT[_train] = _label
