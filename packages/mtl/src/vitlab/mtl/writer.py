"""``vitlab predict`` output of the multi-task modules: per image and task, files other tools read.

* ``semseg`` / ``human_parts``: ``<name>_<task>.png`` class ids (8-bit) and ``<name>_<task>_color.png``, a
  palette PNG (VOC palette) whose pixel values are the same ids;
* ``sal``: ``<name>_sal.png``, 8-bit ``round(255 * sigmoid)``;
* ``edge``: ``<name>_edge.png``, 8-bit ``round(255 * sigmoid)`` (the input of the SEISM / pyEdgeEval benchmark);
* ``normals``: ``<name>_normals.png`` RGB ``round((n + 1) / 2 * 255)`` and ``<name>_normals.npy`` float32
  ``(H, W, 3)`` unit vectors;
* ``depth``: ``<name>_depth.png`` 16-bit millimetres (0 = invalid), ``<name>_depth.npy`` float32 metres and
  ``<name>_depth_color.png``.

Maps are written at the size of the image on disk when the batch says it (``orig_size``, from
:class:`~vitlab.core.data.ImageFolderPredictDataModule`), at the network's input size otherwise.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from lightning.pytorch import LightningModule, Trainer
from PIL import Image

from vitlab.core.data import label_palette
from vitlab.core.writers import PredictionWriter, at_input_size, sample_names, save_depth, save_labels

__all__ = ["MTL_TASKS", "MultiTaskPredictionWriter"]

#: the task keys this writer stores
MTL_TASKS = ("semseg", "human_parts", "sal", "edge", "normals", "depth")


def _to_uint8(p: np.ndarray) -> np.ndarray:
    return np.clip(np.round(np.asarray(p, dtype=np.float32) * 255.0), 0, 255).astype(np.uint8)


class MultiTaskPredictionWriter(PredictionWriter):
    """Writes the per-task predictions of :class:`~vitlab.mtl.MultiTaskModule` (see the module docstring).

    Args:
        output_dir: destination folder; default ``<run folder>/predictions``.
    """

    def write_on_batch_end(self, trainer: Trainer, pl_module: LightningModule, prediction: Any,
                           batch_indices, batch: Any, batch_idx: int, dataloader_idx: int = 0) -> None:
        tasks = [t for t in MTL_TASKS if isinstance(prediction, dict) and t in prediction]
        if not tasks:
            keys = sorted(prediction) if isinstance(prediction, dict) else type(prediction).__name__
            raise ValueError(f"{type(self).__name__}: predictions of {type(pl_module).__name__} have none of "
                             f"{MTL_TASKS} (got {keys})")
        out = self._dir(trainer)
        names = sample_names(prediction, batch, batch_idx, len(prediction[tasks[0]]))
        num_outputs = getattr(pl_module, "num_outputs", {})
        for i, name in enumerate(names):
            for t in tasks:
                x = prediction[t]
                if t in ("semseg", "human_parts"):
                    ids = at_input_size(x, batch, i, nearest=True)
                    n = int(num_outputs.get(t, int(x.max()) + 1))
                    save_labels(out, f"{name}_{t}", ids, label_palette(n))
                elif t in ("sal", "edge"):
                    p = at_input_size(x.float(), batch, i)
                    Image.fromarray(_to_uint8(p.reshape(p.shape[-2:]))).save(out / f"{name}_{t}.png")
                elif t == "normals":
                    v = torch.from_numpy(at_input_size(x.float(), batch, i))
                    v = torch.nn.functional.normalize(v, dim=0).permute(1, 2, 0).numpy()
                    np.save(out / f"{name}_normals.npy", v.astype(np.float32))
                    Image.fromarray(_to_uint8((v + 1.0) / 2.0)).save(out / f"{name}_normals.png")
                else:
                    save_depth(out, f"{name}_depth", at_input_size(x.float(), batch, i))
            self.written += 1
