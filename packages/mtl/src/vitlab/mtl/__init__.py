"""vitlab.mtl — multi-task dense scene understanding on the vitlab core.

* Data: :class:`PASCALContextMT` / :class:`NYUDMT` readers (real on-disk layouts) with their DataModules and
  :class:`SyntheticMultiTaskDataModule` (every task from core's SyntheticScenes).
* Losses (:class:`MultiTaskLoss`, standard weights), metrics (:class:`MeanIoU`, :class:`SaliencyMetric`,
  :class:`NormalsMetric`, :class:`DepthRMSE`, :class:`EdgeLossProxy`) and :func:`delta_m`.
* Methods: :class:`MultiTaskFineTune` (single-task and MTL full fine-tuning), :class:`MTLoRA`,
  :class:`TADFormer`, all on :class:`vitlab.core.Swin` with per-task HRNet heads; :class:`SCAMTL` (sequential
  cross attention: CTAM/CSAM on MTI-Net decoding over HRNet-W18).

Installing this distribution registers it in the `vitlab.plugins` entry-point group, so the
`vitlab` CLI resolves its classes by short name.
"""

from vitlab.mtl.data import (
    MultiTaskDataModule,
    NYUDMTDataModule,
    PASCALContextMTDataModule,
    SyntheticMultiTaskDataModule,
)
from vitlab.mtl.datasets import NYUDMT, PASCALContextMT
from vitlab.mtl.heads import Downsampler, HighResolutionHead, TaskDecoder
from vitlab.mtl.losses import TASK_WEIGHTS, MultiTaskLoss, balanced_bce
from vitlab.mtl.metrics import (
    SINGLE_TASK_REFERENCES,
    DepthRMSE,
    EdgeLossProxy,
    MeanIoU,
    NormalsMetric,
    SaliencyMetric,
    delta_m,
    save_edge_pngs,
)
from vitlab.mtl.module import TASK_OUTPUTS, MultiTaskFineTune, MultiTaskModule
from vitlab.mtl.mtlora import MTLoRA, MTLoRALinear, MTLoRASwin
from vitlab.mtl.sca import GCA, SCAMTL, CSAMHead, SCAEncoder
from vitlab.mtl.tadformer import TADFormer, TADFormerSwin, TALinear
from vitlab.mtl.transforms import MultiTaskTransform

__version__ = "0.1.0"

__all__ = [
    "NYUDMT",
    "MultiTaskDataModule",
    "MultiTaskTransform",
    "NYUDMTDataModule",
    "PASCALContextMT",
    "PASCALContextMTDataModule",
    "SyntheticMultiTaskDataModule",
    "SINGLE_TASK_REFERENCES",
    "TASK_OUTPUTS",
    "TASK_WEIGHTS",
    "DepthRMSE",
    "Downsampler",
    "EdgeLossProxy",
    "HighResolutionHead",
    "MTLoRA",
    "MTLoRALinear",
    "MTLoRASwin",
    "MeanIoU",
    "MultiTaskFineTune",
    "MultiTaskLoss",
    "MultiTaskModule",
    "NormalsMetric",
    "SaliencyMetric",
    "GCA",
    "CSAMHead",
    "SCAEncoder",
    "SCAMTL",
    "TADFormer",
    "TADFormerSwin",
    "TALinear",
    "TaskDecoder",
    "balanced_bce",
    "delta_m",
    "save_edge_pngs",
]
