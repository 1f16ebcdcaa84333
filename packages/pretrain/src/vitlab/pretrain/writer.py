"""``vitlab predict`` output of masked-image-modelling pre-training: what the network fills in, per image.

``<name>_masked.png`` (the input with its masked patches greyed out), ``<name>_recon.png`` (the visible patches
with the predicted ones pasted in) and ``<name>_recon_full.png`` (the raw prediction everywhere), RGB at the
image's size on disk when the batch says it (``orig_size``), else at the network's input size; one masking draw
per image (the module's own masking generator, seeded by the run).
"""

from __future__ import annotations

from typing import Any

import torch
from lightning.pytorch import LightningModule, Trainer
from PIL import Image

from vitlab.core.visualize import to_uint8_image
from vitlab.core.writers import PredictionWriter, at_input_size, sample_names

__all__ = ["ReconstructionWriter"]


class ReconstructionWriter(PredictionWriter):
    """Writes the reconstructions of :class:`~vitlab.pretrain.base.MIMModule` (see the module docstring).

    Args:
        output_dir: destination folder; default ``<run folder>/predictions``.
    """

    def write_on_batch_end(self, trainer: Trainer, pl_module: LightningModule, prediction: Any,
                           batch_indices, batch: Any, batch_idx: int, dataloader_idx: int = 0) -> None:
        if not isinstance(prediction, dict) or not {"image", "recon", "mask"} <= set(prediction):
            keys = sorted(prediction) if isinstance(prediction, dict) else type(prediction).__name__
            raise ValueError(f"{type(self).__name__}: predictions of {type(pl_module).__name__} need image, recon "
                             f"and mask (got {keys})")
        out = self._dir(trainer)
        images, recon, mask = prediction["image"], prediction["recon"], prediction["mask"]
        for i, name in enumerate(sample_names(prediction, batch, batch_idx, len(images))):
            x, r, m = (torch.from_numpy(at_input_size(t.float(), batch, i)) for t in (images, recon, mask))
            grey = x.amin()
            Image.fromarray(to_uint8_image(x * (1 - m) + grey * m)).save(out / f"{name}_masked.png")
            Image.fromarray(to_uint8_image(x * (1 - m) + r * m)).save(out / f"{name}_recon.png")
            Image.fromarray(to_uint8_image(r)).save(out / f"{name}_recon_full.png")
            self.written += 1
