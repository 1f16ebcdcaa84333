"""CroCo: cross-view completion pre-training (Weinzaepfel et al., "CroCo: Self-Supervised Pre-training for 3D
Vision Tasks by Cross-View Completion", NeurIPS 2022; "CroCo v2: Improved Cross-view Completion Pre-training for
Stereo Matching and Optical Flow", ICCV 2023; official code `naver/croco`).

Follows the CroCo v2 recipe [code]:

* two views of one scene (a stereo pair, or any image pair with overlap); only view 1 is masked, at
  **ratio 0.9** with CroCo's ``RandomMask`` law (``int(r N)`` patches masked per image, uniformly at random);
* the shared RoPE2D (base 100) ViT encoder sees the visible tokens of view 1 and all tokens of view 2
  (two encoder calls, no class token, no additive positions);
* ONE shared ``decoder_embed`` maps both to the decoder width; ``mask_token`` fills the masked places of view 1;
  cross-attention decoder blocks (view 1 queries, view 2 memory, the memory unchanged from block to block),
  ``dec_norm``, ``prediction_head = Linear(dec_dim -> 16*16*3)``;
* loss: MSE to the norm-pix target (every patch standardised with its mean and unbiased variance + 1e-6),
  averaged over the masked patches of view 1 only;
* optimiser: AdamW (0.9, 0.95), wd 0.05 (none on biases, norms, 1-D parameters and the mask token),
  ``lr = blr * batch / 256`` with ``blr = 1.5e-4``, linear warm-up then half-cycle cosine (per step).

The network is core's :class:`~vitlab.core.backbones.croco.CroCoNet`, the same body as
``vitlab.stereo.BinocularViT``, stored under ``net.``: a checkpoint of this module loads into ``BinocularViT`` with
its ``pretrained:`` key (names match one to one; only the DPT head is new), and into ``ViT(pretrained=...)``
(the encoder alone). Not weight-decaying the mask token is an [inferred] choice (the spec lists biases, norms and
1-D parameters); ``decay_mask_token`` exposes it.
"""

from __future__ import annotations

from typing import Any

from torch import Tensor

from vitlab.core.backbones import CroCoNet, masked_mse
from vitlab.pretrain.base import MIMModule
from vitlab.pretrain.masking import MaskGenerator, MaskOutput, RandomPatchMask

__all__ = ["CroCo"]


class CroCo(MIMModule):
    """Cross-view completion pre-training of a :class:`~vitlab.core.backbones.croco.CroCoNet` (see the module
    docstring for what follows CroCo v2).

    Args:
        net: the CroCo network, e.g. ``{class_path: vitlab.core.CroCoNet, init_args: {preset: B-B}}`` (ViT-B
            encoder, Base decoder). Its ``prediction_head`` predicts ``patch_size**2 * 3`` values per patch.
        masking: mask generator for view 1; default ``RandomPatchMask(0.9, count="mask")`` (CroCo's law). Any
            generator with one keep count per batch works (not per-image AMR ratios).
        view_keys: batch entries of view 1 (masked, reconstructed) and view 2 (seen whole): ``("image", "right")``,
            the stereo batch layout of ``SyntheticStereoDataModule`` / ``SyntheticScenesDataModule``
            (``modalities: [image, right]``), the stereo readers and :class:`vitlab.core.data.ImagePairDataModule`.
        norm_pix_loss: per-patch normalised pixel targets (True, CroCo v2).
        decay_mask_token: weight-decay the mask token too (False).
        base_lr: blr (1.5e-4); ``lr = blr * batch * accumulate * world_size / 256``.
        **kwargs: :class:`~vitlab.pretrain.base.MIMModule` / :class:`vitlab.core.VitlabModule` options
            (``warmup_epochs``, ``weight_decay`` 0.05, ``min_lr`` ...).
    """

    def __init__(
        self,
        net: CroCoNet,
        masking: MaskGenerator | None = None,
        view_keys: tuple[str, str] | list[str] = ("image", "right"),
        norm_pix_loss: bool = True,
        decay_mask_token: bool = False,
        base_lr: float | None = 1.5e-4,
        lr_batch_divisor: int = 256,
        **kwargs,
    ) -> None:
        view_keys = tuple(view_keys)
        if len(view_keys) != 2 or view_keys[0] == view_keys[1]:
            raise ValueError(f"CroCo: view_keys must name two different batch entries, got {view_keys}")
        super().__init__(encoder=None, masking=masking, base_lr=base_lr, lr_batch_divisor=lr_batch_divisor,
                         image_key=view_keys[0], **kwargs)
        self.save_hparams("net", "masking")
        self.net = net
        self.view_keys = view_keys
        self.norm_pix_loss = bool(norm_pix_loss)
        self.decay_tokens = bool(decay_mask_token)

    @property
    def encoder(self):
        """The shared view encoder (``net.encoder``): what MIM's base class masks for and what transfers."""
        return self.net.encoder

    def default_masking(self) -> MaskGenerator:
        return RandomPatchMask(0.9, count="mask")

    def views(self, batch: dict[str, Tensor]) -> tuple[Tensor, Tensor]:
        """``(view 1, view 2)`` from the batch, with a clear error when an entry is missing or the sizes differ."""
        missing = [k for k in self.view_keys if k not in batch]
        if missing:
            raise KeyError(f"CroCo: batch has no {missing} entry (keys: {sorted(batch)}); it needs two views "
                           f"{list(self.view_keys)}, e.g. SyntheticStereoDataModule(modalities=[image, right])")
        v1, v2 = batch[self.view_keys[0]], batch[self.view_keys[1]]
        if v1.shape != v2.shape:
            raise ValueError(f"CroCo: views {self.view_keys[0]} {tuple(v1.shape)} and {self.view_keys[1]} "
                             f"{tuple(v2.shape)} differ in size")
        return v1, v2

    # ------------------------------------------------------------------ hooks
    def encode(self, images: Tensor, masks: MaskOutput, batch: dict[str, Tensor]) -> dict[str, Any]:
        if not masks.uniform:
            raise ValueError("CroCo: the mask generator must keep the same number of patches in every image")
        _, view2 = self.views(batch)
        enc1, _, hw = self.net.encode(images, masks.ids_keep)
        enc2, _, _ = self.net.encode(view2)
        return {"view1": enc1[-1], "view2": enc2[-1], "hw": hw}

    def decode(self, latent: dict[str, Any], masks: MaskOutput, batch: dict[str, Tensor]) -> dict[str, Any]:
        dec = self.net.decode(latent["view1"], latent["view2"], latent["hw"], masks.ids_keep)
        return {"pred": self.net.reconstruct(dec[-1])}

    def loss(self, out, images, masks, batch) -> dict[str, Tensor]:
        return self.with_plugin_losses(out, masked_mse(out["pred"], self.target(images), masks.mask))

    def picture_extras(self, batch: dict[str, Tensor]) -> dict[str, Tensor]:
        return {"view 2": self.views(batch)[1]}
