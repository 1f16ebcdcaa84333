"""``vitlab predict`` output for stereo: disparity as PFM, KITTI uint16 PNG and a colourised PNG per pair."""

from __future__ import annotations

import bisect
import os
import re
from pathlib import Path
from typing import Any

import numpy as np
from lightning.pytorch import LightningModule, Trainer
from lightning.pytorch.callbacks import BasePredictionWriter
from PIL import Image
from torch.utils.data import ConcatDataset, Dataset

from vitlab.core.data import SeededSamples, colorize, write_kitti_disparity, write_pfm

__all__ = ["StereoPredictionWriter"]

FORMATS = ("pfm", "kitti", "color")


def _input_tag(position: int, dataset: Dataset) -> str:
    """Folder name of one input dataset: its position in the predict set plus the name of its root folder.

    The root is the dataset's ``root`` attribute when it has one, otherwise the deepest folder shared by
    all its left images (stereo datasets list ``(name, left, right, ...)`` in ``pairs``).
    """
    root = getattr(dataset, "root", None)
    if root is None and getattr(dataset, "pairs", None):
        lefts = [str(p[1]) for p in dataset.pairs if len(p) > 1 and isinstance(p[1], (str, os.PathLike))]
        if lefts:
            common = Path(os.path.commonpath(lefts))
            root = common.parent if len(lefts) == 1 else common
    label = re.sub(r"[^A-Za-z0-9._-]+", "_", Path(root).name) if root is not None else type(dataset).__name__
    return f"{position:02d}_{label}"


class StereoPredictionWriter(BasePredictionWriter):
    """Writes ``<name>.pfm`` (float32), ``<name>_kitti.png`` (uint16, v = round(256 d), 0 = invalid) and
    ``<name>_color.png`` (turbo colour map, 0 .. per-image max) for every predicted pair.

    The name is the sample's ``name`` (slashes become ``__``) or its ``index`` (``000042``). When the predict
    set holds several datasets (several entries of ``predict_datasets``, or several dataloaders), each one
    writes into its own sub-folder ``<position>_<root folder name>`` (e.g. ``00_HalfSize``,
    ``01_FullSize``), so two roots holding scenes of the same name never overwrite each other. Within one
    run a name is never written twice: a repeat raises instead of silently replacing the first file.
    Negative disparities (the head has no output activation) are clamped to 0 before the PNGs are written.

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
        self._inputs: list[tuple[list[int], list[str]]] = []
        self._written: dict[Path, str] = {}

    def on_predict_epoch_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        """Map every predict dataloader's sample indices to the input dataset (and sub-folder) they come from."""
        if self.output_dir is None:
            self.output_dir = Path(trainer.default_root_dir) / "predictions"
        loaders = trainer.predict_dataloaders
        loaders = [] if loaders is None else (list(loaders) if isinstance(loaders, (list, tuple)) else [loaders])
        datasets = [getattr(dl, "dataset", None) for dl in loaders]
        datasets = [ds.dataset if isinstance(ds, SeededSamples) else ds for ds in datasets]  # core's loader wrapper
        parts_per_loader = [list(ds.datasets) if isinstance(ds, ConcatDataset) else [ds] for ds in datasets]
        several = sum(len(parts) for parts in parts_per_loader) > 1
        self._inputs, position = [], 0
        for ds, parts in zip(datasets, parts_per_loader):
            ends = list(ds.cumulative_sizes) if isinstance(ds, ConcatDataset) else [len(ds) if ds is not None else 0]
            tags = []
            for part in parts:
                tags.append(_input_tag(position, part) if several and part is not None else "")
                position += 1
            self._inputs.append((ends, tags))
        self._written = {}

    def _folder(self, dataloader_idx: int, sample_index: int | None) -> Path:
        if dataloader_idx >= len(self._inputs) or sample_index is None:
            return self.output_dir
        ends, tags = self._inputs[dataloader_idx]
        part = min(bisect.bisect_right(ends, sample_index), len(tags) - 1)
        return self.output_dir / tags[part] if tags[part] else self.output_dir

    def write_on_batch_end(self, trainer: Trainer, pl_module: LightningModule, prediction: Any,
                           batch_indices, batch: Any, batch_idx: int, dataloader_idx: int = 0) -> None:
        disp = prediction["disparity"].detach().float().cpu()
        names = prediction.get("name")
        index = prediction.get("index")
        if self.output_dir is None:
            self.output_dir = Path(trainer.default_root_dir) / "predictions"
        for i in range(disp.shape[0]):
            if names is not None:
                name = str(names[i]).replace("/", "__")
            elif index is not None:
                name = f"{int(index[i]):06d}"
            else:
                name = f"{batch_idx:06d}_{i}"
            sample_index = int(batch_indices[i]) if batch_indices is not None and i < len(batch_indices) else None
            folder = self._folder(dataloader_idx, sample_index)
            stem = folder / name
            if stem in self._written:
                raise RuntimeError(
                    f"StereoPredictionWriter: two predicted samples map to {stem}.* ({self._written[stem]} and "
                    f"sample {sample_index} of dataloader {dataloader_idx}); give the samples unique names"
                )
            self._written[stem] = f"sample {sample_index} of dataloader {dataloader_idx}"
            folder.mkdir(parents=True, exist_ok=True)
            d = disp[i, 0].numpy()
            if "pfm" in self.formats:
                write_pfm(folder / f"{name}.pfm", d)
            dc = np.clip(d, 0.0, None)
            if "kitti" in self.formats:
                write_kitti_disparity(folder / f"{name}_kitti.png", dc)
            if "color" in self.formats:
                vmax = float(dc.max()) if dc.size and dc.max() > 0 else 1.0
                Image.fromarray(colorize(dc, vmin=0.0, vmax=vmax)).save(folder / f"{name}_color.png")
