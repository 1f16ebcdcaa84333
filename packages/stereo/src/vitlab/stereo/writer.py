"""``vitlab predict`` output for stereo: disparity as PFM, KITTI uint16 PNG and a colourised PNG per pair."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from lightning.pytorch import LightningModule, Trainer
from lightning.pytorch.callbacks import BasePredictionWriter
from PIL import Image

from vitlab.core.data.io import colorize, write_kitti_disparity, write_pfm

__all__ = ["StereoPredictionWriter"]

FORMATS = ("pfm", "kitti", "color")


class StereoPredictionWriter(BasePredictionWriter):
    """Writes ``<name>.pfm`` (float32), ``<name>_kitti.png`` (uint16, v = round(256 d), 0 = invalid) and
    ``<name>_color.png`` (turbo colour map, 0 .. per-image max) for every predicted pair.

    The name is the sample's ``name`` (slashes become ``__``) or its ``index`` (``000042``). Negative
    disparities (the head has no output activation) are clamped to 0 before the PNGs are written.

    Args:
        output_dir: destination folder (created); default ``<run folder>/predictions``.
        formats: any of ``pfm``, ``kitti``, ``color``.
    """

    def __init__(self, output_dir: str | None = None, formats: list[str] | None = None) -> None:
        super().__init__(write_interval="batch")
        self.output_dir = Path(output_dir) if output_dir else None
        self.formats = list(formats or FORMATS)
        bad = [f for f in self.formats if f not in FORMATS]
        if bad:
            raise ValueError(f"unknown formats {bad}; choose from {FORMATS}")

    def write_on_batch_end(self, trainer: Trainer, pl_module: LightningModule, prediction: Any,
                           batch_indices, batch: Any, batch_idx: int, dataloader_idx: int = 0) -> None:
        disp = prediction["disparity"].detach().float().cpu()
        names = prediction.get("name")
        index = prediction.get("index")
        if self.output_dir is None:
            self.output_dir = Path(trainer.default_root_dir) / "predictions"
        self.output_dir.mkdir(parents=True, exist_ok=True)
        for i in range(disp.shape[0]):
            if names is not None:
                name = str(names[i]).replace("/", "__")
            elif index is not None:
                name = f"{int(index[i]):06d}"
            else:
                name = f"{batch_idx:06d}_{i}"
            d = disp[i, 0].numpy()
            if "pfm" in self.formats:
                write_pfm(self.output_dir / f"{name}.pfm", d)
            dc = np.clip(d, 0.0, None)
            if "kitti" in self.formats:
                write_kitti_disparity(self.output_dir / f"{name}_kitti.png", dc)
            if "color" in self.formats:
                vmax = float(dc.max()) if dc.size and dc.max() > 0 else 1.0
                Image.fromarray(colorize(dc, vmin=0.0, vmax=vmax)).save(self.output_dir / f"{name}_color.png")
