"""``vitlab predict`` output of the domain-adaptation modules: core's segmentation files, Cityscapes-style.

Per image: ``<name>.png`` train ids (8-bit), ``<name>_color.png`` a palette PNG with the Cityscapes colours
(its pixel values are the train ids too) and, with ``label_ids`` (on by default for the 19 Cityscapes classes),
``<name>_labelIds.png``: train ids mapped to Cityscapes label ids, the format the Cityscapes test server takes.
"""

from __future__ import annotations

from lightning.pytorch import LightningModule, Trainer

from vitlab.core.writers import DensePredictionWriter

__all__ = ["UDAPredictionWriter"]


class UDAPredictionWriter(DensePredictionWriter):
    """:class:`~vitlab.core.writers.DensePredictionWriter` with the Cityscapes palette and label-id files.

    Args:
        output_dir: destination folder; default ``<run folder>/predictions``.
        palette: ``cityscapes`` (default) or ``voc``.
        label_ids: write ``<name>_labelIds.png``; None: when the module has the 19 Cityscapes classes.
    """

    def __init__(self, output_dir: str | None = None, palette: str = "cityscapes",
                 label_ids: bool | None = None) -> None:
        super().__init__(output_dir, palette=palette, label_ids=bool(label_ids))
        self._auto_label_ids = label_ids is None

    def on_predict_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if self._auto_label_ids:
            self.label_ids = int(getattr(pl_module, "num_classes", 0)) == 19
