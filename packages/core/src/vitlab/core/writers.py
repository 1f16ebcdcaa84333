"""``vitlab predict`` output of the core tasks: one file per image, in formats other tools read.

* semantic segmentation (``{"semantic": (B,H,W)}``): ``<name>.png``, 8-bit class ids (16-bit above 255
  classes), plus ``<name>_color.png`` with the module's palette;
* depth (``{"depth": (B,1,H,W)}``): ``<name>_depth.png`` 16-bit in millimetres (NYU / mmseg convention,
  0 = invalid) and ``<name>_depth.npy`` float32 metres;
* classification (``{"label", "probs"}``): one ``predictions.csv`` (name, class id, probability).

Names come from the batch's ``name`` (slashes become ``__``) or ``index`` (``000042``), else
``<batch>_<i>``. Files go to ``<run folder>/predictions`` unless ``output_dir`` says otherwise.
The CLI adds this writer to ``vitlab predict`` when the config has no prediction writer and the module's
predictions have one of the keys above; otherwise ``predict`` stops with an error instead of writing nothing.
"""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any

import numpy as np
from lightning.pytorch import LightningModule, Trainer
from lightning.pytorch.callbacks import BasePredictionWriter
from PIL import Image

from vitlab.core.data.colormaps import colorize

__all__ = ["DensePredictionWriter", "WRITABLE_KEYS", "sample_names"]

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


def _palette(num_classes: int) -> np.ndarray:
    rng = np.random.default_rng(0)
    return rng.integers(0, 256, (max(num_classes, 1), 3), dtype=np.uint8)


class DensePredictionWriter(BasePredictionWriter):
    """Writes the predictions of core task modules (see the module docstring).

    Args:
        output_dir: destination folder; default ``<run folder>/predictions``.
    """

    def __init__(self, output_dir: str | None = None) -> None:
        super().__init__(write_interval="batch")
        self.output_dir = output_dir
        self.written = 0
        self._csv: Path | None = None

    def _dir(self, trainer: Trainer) -> Path:
        out = Path(self.output_dir) if self.output_dir else Path(trainer.default_root_dir) / "predictions"
        out.mkdir(parents=True, exist_ok=True)
        return out

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
            sem = prediction["semantic"].detach().cpu().numpy()
            num_classes = int(getattr(pl_module, "num_classes", int(sem.max()) + 1))
            palette = _palette(num_classes)
            for name, s in zip(names, sem):
                ids = s.astype(np.uint16 if num_classes > 256 else np.uint8)
                Image.fromarray(ids).save(out / f"{name}.png")
                Image.fromarray(palette[np.clip(s, 0, num_classes - 1)]).save(out / f"{name}_color.png")
                self.written += 1
        if "depth" in prediction:
            depth = prediction["depth"].detach().float().cpu().numpy()
            for name, d in zip(names, depth):
                d = d.reshape(d.shape[-2:])
                np.save(out / f"{name}_depth.npy", d.astype(np.float32))
                mm = np.clip(np.round(np.nan_to_num(d, nan=0.0) * 1000.0), 0, 65535).astype(np.uint16)
                Image.fromarray(mm).save(out / f"{name}_depth.png")
                vmax = float(np.nanmax(d)) if d.size and np.nanmax(d) > 0 else 1.0
                Image.fromarray(colorize(d, vmin=0.0, vmax=vmax)).save(out / f"{name}_depth_color.png")
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

    def on_predict_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if trainer.is_global_zero:
            print(f"vitlab: wrote {self.written} predictions to {self._dir(trainer)}", flush=True)
