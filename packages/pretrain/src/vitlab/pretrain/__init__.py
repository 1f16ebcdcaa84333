"""vitlab.pretrain — Masked-image-modeling pre-training for ViTs: MAE, SimMIM, CroCo cross-view completion, salience-based adaptive masking (SBAM/AMR), masked-token optimization (MTO), structured-knowledge-guided MIM (SG-MIM) and noise-in-encoder corruption/restoration.

Installing this distribution registers it in the `vitlab.plugins` entry-point group, so the
`vitlab` CLI resolves its classes by short name.
"""

from vitlab.pretrain.base import MIMModule
from vitlab.pretrain.croco import CroCo
from vitlab.pretrain.data import PseudoDepthFolderDataModule, PseudoDepthFolderDataset
from vitlab.pretrain.losses import masked_l1, masked_mse, norm_pix_target, patchify, unpatchify
from vitlab.pretrain.mae import MAE, MAEDecoder, convert_mae_decoder
from vitlab.pretrain.masking import (
    BlockRandomMask,
    ComplementaryMask,
    MaskGenerator,
    MaskOutput,
    RandomPatchMask,
    SalienceMask,
    salience_scores,
)
from vitlab.pretrain.mto import MTO
from vitlab.pretrain.noise import NoiseMIM
from vitlab.pretrain.sgmim import SGMIM
from vitlab.pretrain.simmim import SimMIM

__version__ = "0.1.0"

__all__ = [
    "MAE",
    "MAEDecoder",
    "MIMModule",
    "MTO",
    "BlockRandomMask",
    "ComplementaryMask",
    "CroCo",
    "MaskGenerator",
    "MaskOutput",
    "NoiseMIM",
    "PseudoDepthFolderDataModule",
    "PseudoDepthFolderDataset",
    "RandomPatchMask",
    "SGMIM",
    "SalienceMask",
    "SimMIM",
    "convert_mae_decoder",
    "masked_l1",
    "masked_mse",
    "norm_pix_target",
    "patchify",
    "salience_scores",
    "unpatchify",
]
