"""``MIMModule``: the shared LightningModule of every masked-image-modelling method in this package.

A method is four hooks (spec §5): ``make_mask`` -> ``encode`` -> ``decode`` -> ``loss``. The base class owns
the training/validation steps, logging, reconstruction pictures and the linear learning-rate scaling rule
``lr = base_lr * effective_batch / lr_batch_divisor`` (MAE ``/256``, SimMIM ``/512``) computed from
``batch_size x accumulate_grad_batches x world_size`` when the optimizer is built. Optimizer groups and the
per-step warmup + half-cycle cosine come from :class:`vitlab.core.VitlabModule`.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from vitlab.core import ViT, VitlabModule
from vitlab.core.backbones import norm_pix_target, patchify, run_block, unpatchify
from vitlab.core.visualize import panel, to_uint8_image
from vitlab.pretrain.masking import MaskGenerator, MaskOutput, RandomPatchMask

__all__ = ["MIMModule", "run_block", "run_blocks", "attention_probs", "merge_attn_masks"]


def merge_attn_masks(*masks: Tensor | None) -> Tensor | None:
    """Combine attention masks into one additive float mask (bool masks: True = may attend)."""
    out = None
    for m in masks:
        if m is None:
            continue
        if m.dtype == torch.bool:
            m = torch.zeros(m.shape, device=m.device).masked_fill(~m, float("-inf"))
        out = m if out is None else out + m
    return out


def run_blocks(
    blocks, x: Tensor, pos: Tensor | None = None, attn_mask: Tensor | None = None, capture: Iterable[int] = (),
    checkpointing: bool = False,
) -> tuple[Tensor, dict[int, Tensor]]:
    """Run ``blocks`` in order; returns the output and the inputs of the blocks listed in ``capture``
    (``checkpointing``: see core's :func:`~vitlab.core.backbones.vit.run_block`)."""
    wanted, saved = set(capture), {}
    for i, blk in enumerate(blocks):
        if i in wanted:
            saved[i] = x
        x = run_block(blk, x, pos, attn_mask, checkpointing)
    return x, saved


def attention_probs(blk: nn.Module, x: Tensor, attn_mask: Tensor | None = None) -> Tensor:
    """Softmax attention ``(B, heads, N, N)`` of a timm ``Block`` on its input ``x``, recomputed differentiably.

    timm's fused SDPA never materialises the matrix, so attention-based losses recompute q, k with the
    block's own ``norm1`` / ``attn.qkv`` (and q/k norms) for the few layers they need.
    """
    attn = blk.attn
    B, N, _ = x.shape
    qkv = attn.qkv(blk.norm1(x)).reshape(B, N, 3, attn.num_heads, attn.head_dim).permute(2, 0, 3, 1, 4)
    q, k = attn.q_norm(qkv[0]), attn.k_norm(qkv[1])
    logits = (q.float() * attn.scale) @ k.float().transpose(-2, -1)
    if attn_mask is not None:
        logits = logits + merge_attn_masks(attn_mask).float()
    return logits.softmax(dim=-1)


class MIMModule(VitlabModule):
    """Base of MAE, SimMIM, SG-MIM and the noise-in-encoder method.

    Args:
        encoder: the :class:`vitlab.core.ViT` that is pre-trained (saved under ``encoder.*``, so a Lightning
            checkpoint of any method loads into ``ViT(pretrained=...)`` and every downstream task).
        masking: a :class:`~vitlab.pretrain.masking.MaskGenerator`; ``None`` = the method's default.
        base_lr: base learning rate; the peak lr is ``base_lr * effective_batch / lr_batch_divisor``. ``None``
            uses ``lr`` as given.
        lr_batch_divisor: 256 (MAE) or 512 (SimMIM).
        batch_size: per-device batch size for the lr rule; ``None`` reads ``datamodule.batch_size`` (or the
            train loader's).
        image_key: batch entry holding the (normalised) images.
        **kwargs: optimizer and schedule options of :class:`vitlab.core.VitlabModule`.
    """

    default_writer = "vitlab.pretrain.writer.ReconstructionWriter"

    def __init__(
        self,
        encoder: ViT | None,
        masking: MaskGenerator | None = None,
        base_lr: float | None = 1.5e-4,
        lr_batch_divisor: int = 256,
        batch_size: int | None = None,
        image_key: str = "image",
        **kwargs,
    ) -> None:
        super().__init__(**kwargs)
        if encoder is not None:  # None: the subclass exposes ``encoder`` itself (CroCo: its network's encoder)
            self.encoder = encoder
        self.masking = masking if masking is not None else self.default_masking()
        self.base_lr = base_lr
        self.lr_batch_divisor = int(lr_batch_divisor)
        self.batch_size = batch_size
        self.image_key = image_key

    # ------------------------------------------------------------------ hooks
    def default_masking(self) -> MaskGenerator:
        return RandomPatchMask(0.75)

    @property
    def patch_size(self) -> int:
        return int(self.encoder.patch_size)

    def images(self, batch: dict[str, Tensor]) -> Tensor:
        if self.image_key not in batch:
            raise KeyError(f"{type(self).__name__}: batch has no {self.image_key!r} entry (keys: {sorted(batch)})")
        return batch[self.image_key]

    def make_mask(self, batch: dict[str, Tensor], images: Tensor) -> MaskOutput:
        """Masks for this batch; salience-based generators get patch embedding + positions (no grad)."""
        B, _, H, W = images.shape
        p = self.patch_size
        grid = (H // p, W // p)
        tokens = None
        if getattr(self.masking, "needs_tokens", False):
            with torch.no_grad():
                tokens, grid = self.encoder.patchify_embed(images)
                table = self.encoder.abs_pos_embed(*grid)
                if table is not None:
                    tokens = tokens + table[:, self.encoder.num_prefix_tokens :].to(tokens.dtype)
        epoch = self.current_epoch if self._trainer is not None else 0
        return self.masking(B, grid, images.device, patch_size=p, tokens=tokens, epoch=epoch)

    def encode(self, images: Tensor, masks: MaskOutput, batch: dict[str, Tensor]) -> dict[str, Any]:
        raise NotImplementedError

    def decode(self, latent: dict[str, Any], masks: MaskOutput, batch: dict[str, Tensor]) -> dict[str, Any]:
        raise NotImplementedError

    def loss(self, out: dict[str, Any], images: Tensor, masks: MaskOutput, batch: dict[str, Tensor]) -> dict[str, Tensor]:
        """Returns a dict with the total ``loss`` and any logged components."""
        raise NotImplementedError

    @staticmethod
    def with_plugin_losses(out: dict[str, Any], loss_mim: Tensor) -> dict[str, Tensor]:
        """``{"loss_mim", <MTO terms if the plug-in ran>, "loss" = their sum}`` for a reconstruction loss."""
        losses = {"loss_mim": loss_mim}
        total = loss_mim
        if "mto" in out:
            losses.update(out["mto"])
            total = total + out["mto"]["mto"]
        losses["loss"] = total
        return losses

    def progress(self) -> float:
        """Fraction of training done (0..1); 1.0 outside ``fit`` (schedules such as MTO's switch off)."""
        trainer = self._trainer
        if trainer is None or not self.training:
            return 1.0
        total = trainer.estimated_stepping_batches
        return min(1.0, self.global_step / max(float(total), 1.0))

    #: patch-prediction methods (MAE, CroCo, noise-in-encoder): standardise each target patch (norm-pix)
    norm_pix_loss: bool = True

    def target(self, images: Tensor) -> Tensor:
        """Per-patch pixel target ``(B, L, p*p*C)``: :func:`patchify`, standardised per patch if ``norm_pix_loss``."""
        t = patchify(images, self.patch_size)
        return norm_pix_target(t) if self.norm_pix_loss else t

    def reconstruct(self, out: dict[str, Any], images: Tensor, masks: MaskOutput) -> Tensor:
        """Predicted image ``(B, 3, H, W)`` in the input's normalisation, for pictures.

        Default for methods predicting ``out["pred"]`` ``(B, L, p*p*C)`` per patch: a norm-pix prediction is
        mapped back with the true patch statistics, then unpatchified.
        """
        pred = out["pred"].float()
        if self.norm_pix_loss:
            t = patchify(images.float(), self.patch_size)
            pred = pred * (t.var(-1, keepdim=True) + 1e-6) ** 0.5 + t.mean(-1, keepdim=True)
        return unpatchify(pred, self.patch_size, masks.grid, images.shape[1])

    # ------------------------------------------------------------------ steps
    def forward(self, batch: dict[str, Tensor]) -> tuple[dict[str, Tensor], dict[str, Any], MaskOutput]:
        images = self.images(batch)
        masks = self.make_mask(batch, images)
        latent = self.encode(images, masks, batch)
        out = self.decode(latent, masks, batch)
        return self.loss(out, images, masks, batch), out, masks

    def _log_losses(self, losses: dict[str, Tensor], masks: MaskOutput, stage: str) -> None:
        for k, v in losses.items():
            self.log(f"{stage}/{k}", v.detach(), prog_bar=k == "loss", sync_dist=stage != "train")
        self.log(f"{stage}/mask_ratio", masks.ratio.float().mean(), sync_dist=stage != "train")

    def training_step(self, batch: dict[str, Tensor], batch_idx: int) -> dict[str, Tensor]:
        losses, _, masks = self(batch)
        self._log_losses(losses, masks, "train")
        # every term goes back to Lightning, so the CLI's NonFiniteGuard names a NaN term without a host sync
        return {"loss": losses["loss"], **{k: v.detach() for k, v in losses.items() if k != "loss"}}

    def validation_step(self, batch: dict[str, Tensor], batch_idx: int) -> dict[str, Tensor]:
        losses, out, masks = self(batch)
        self._log_losses(losses, masks, "val")
        images = self.images(batch)
        return {"recon": self.reconstruct(out, images, masks), "mask": masks.pixel_mask(self.patch_size)}

    def predict_step(self, batch: dict[str, Tensor], batch_idx: int) -> dict[str, Tensor]:
        """One masking draw per image: the input, the reconstruction and the pixel mask (1 = masked), for
        :class:`~vitlab.pretrain.writer.ReconstructionWriter`."""
        _, out, masks = self(batch)
        images = self.images(batch)
        return {"image": images, "recon": self.reconstruct(out, images, masks),
                "mask": masks.pixel_mask(self.patch_size)}

    def picture_extras(self, batch: dict[str, Tensor]) -> dict[str, Tensor]:
        """Further ``(B, C, H, W)`` inputs shown after the reconstruction (CroCo: view 2); none by default."""
        return {}

    @torch.no_grad()
    def visualize(self, batch: dict[str, Tensor], output: dict[str, Tensor], max_images: int = 4) -> dict[str, np.ndarray]:
        """Input | masked input | reconstruction (visible patches pasted back) [| extras] per image."""
        images = self.images(batch)
        extras = self.picture_extras(batch)
        title = " | ".join(["input", "masked", "reconstruction", *extras])
        recon, m = output["recon"], output["mask"]
        pics = {}
        for i in range(min(max_images, images.shape[0])):
            x = images[i]
            masked = x * (1 - m[i]) + m[i] * x.amin()  # dark masked area
            pasted = x * (1 - m[i]) + recon[i].to(x.dtype) * m[i]
            pics[f"{i}: {title}"] = panel(
                [to_uint8_image(x), to_uint8_image(masked), to_uint8_image(pasted),
                 *(to_uint8_image(t[i]) for t in extras.values())]
            )
        return pics

    # ------------------------------------------------------------------ optimiser
    def effective_batch_size(self) -> int:
        """``batch_size x accumulate_grad_batches x world_size`` (MAE ``eff_batch_size``)."""
        trainer = self.trainer
        bs = self.batch_size
        if bs is None:
            dm = getattr(trainer, "datamodule", None)
            bs = getattr(dm, "batch_size", None)
        if bs is None:
            if trainer.train_dataloader is None:
                trainer.fit_loop.setup_data()  # loads the train loader early (Lightning does it lazily)
            loader = trainer.train_dataloader
            bs = getattr(loader, "batch_size", None)
            if bs is None and isinstance(loader, (list, tuple, dict)):
                first = next(iter(loader.values() if isinstance(loader, dict) else loader), None)
                bs = getattr(first, "batch_size", None)
        if bs is None:
            raise ValueError(
                f"{type(self).__name__}: cannot infer the batch size for the lr rule; set model.batch_size"
            )
        return int(bs) * int(trainer.accumulate_grad_batches) * int(trainer.world_size)

    def configure_optimizers(self) -> dict[str, Any]:
        if self.base_lr is not None:
            eff = self.effective_batch_size()
            self.lr = self.base_lr * eff / self.lr_batch_divisor
            self.effective_batch = eff
        return super().configure_optimizers()
