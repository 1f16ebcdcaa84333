"""Noise-in-encoder corruption and restoration (Choi, Kim, Cha, Yi, Min, "Improving Generative Pre-Training:
An In-depth Study of Masked Image Modeling and Denoising Models", arXiv 2412.19104; later "How Should
Corruption Be Used in SSL?").

What the abstract fixes [paper]: (1) corruption *and* restoration happen inside the encoder; (2) noise is
injected in feature space, preferably in low encoder layers; (3) mask reconstruction and denoising are
explicitly disentangled, with a "disruption loss" against cross-talk between noised and masked tokens.

Everything else is **reconstruction [inferred]** (no equations, hyper-parameters or code are available):

* masked tokens become the learnable mask token and stay in the encoder (SimMIM style), MAE random masking;
* a disjoint subset of the *visible* tokens (``noise_ratio`` of them) gets variance-preserving noise
  ``h = sqrt(abar_t) h + sqrt(1 - abar_t) eps`` at the input of block ``noise_layer`` (0 = after patch + position
  embedding, the injection point of the same author's later "Aether"), ``t ~ U{1..T}`` per image, cosine or
  linear ``abar`` schedule, ``T = 1000``;
* restoration by light heads on the encoder output: pixels of masked tokens (norm-pix MSE, ``L_mim``) and the
  ``denoise_target`` of noised tokens (``L_den``): ``"feature"`` = the clean block-``noise_layer`` input,
  LayerNorm-ed and stop-grad, or ``"pixel"`` = norm-pix targets of the noised patches;
* disentanglement ``disrupt_mode``: ``"attn_mask"`` hides noised keys from masked queries (and, with
  ``disrupt_both``, masked keys from noised queries) in every block from ``noise_layer`` on; ``"penalty"`` adds
  ``L_dis`` = the mean attention mass masked queries put on noised keys (blocks ``penalty_layers``);
  ``"none"`` switches it off;
* ``L = L_mim + lambda_den L_den + lambda_dis L_dis``; MAE optimiser recipe.
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from vitlab.core import ViT
from vitlab.pretrain.base import MIMModule, attention_probs
from vitlab.pretrain.losses import masked_mse
from vitlab.pretrain.masking import MaskGenerator, MaskOutput

__all__ = ["NoiseMIM", "alpha_bar_schedule"]

DISRUPT_MODES = ("attn_mask", "penalty", "none")


def alpha_bar_schedule(name: str, steps: int) -> Tensor:
    """``abar_t`` for ``t = 1..T`` (index ``t - 1``): ``"cosine"`` (Nichol & Dhariwal, s = 0.008) or ``"linear"``
    betas 1e-4 .. 0.02 (DDPM)."""
    t = torch.arange(1, steps + 1, dtype=torch.float64)
    if name == "cosine":
        s = 0.008
        f = torch.cos((t / steps + s) / (1 + s) * math.pi / 2) ** 2
        f0 = math.cos(s / (1 + s) * math.pi / 2) ** 2
        return (f / f0).clamp(1e-5, 1.0).float()
    if name == "linear":
        betas = torch.linspace(1e-4, 0.02, steps, dtype=torch.float64)
        return torch.cumprod(1 - betas, 0).float()
    raise ValueError(f"unknown noise_schedule {name!r}; choose 'cosine' or 'linear'")


class NoiseMIM(MIMModule):
    """Masked + noised tokens inside the encoder, restored by the encoder (see the module docstring).

    Args:
        encoder: ViT with ``mask_token: true`` (and sin-cos/learned positions when ``disrupt_mode=attn_mask``).
        masking: default ``RandomPatchMask(0.75)``.
        noise_ratio: fraction of visible tokens that are noised (0.25).
        noise_layer: block index before which noise is injected (0).
        noise_schedule: ``"cosine"`` or ``"linear"``; num_timesteps: T (1000).
        denoise_target: ``"feature"`` or ``"pixel"``.
        disrupt_mode: ``"attn_mask"``, ``"penalty"`` or ``"none"``; disrupt_both: also block noised -> masked.
        penalty_layers: blocks used by the penalty ([0, -1]).
        lambda_den: 1.0; lambda_dis: 0.1 (penalty mode).
        norm_pix_loss: True.
        base_lr, lr_batch_divisor, **kwargs: MAE rule (1.5e-4, 256) and :class:`vitlab.core.VitlabModule` options.
    """

    def __init__(
        self,
        encoder: ViT,
        masking: MaskGenerator | None = None,
        noise_ratio: float = 0.25,
        noise_layer: int = 0,
        noise_schedule: str = "cosine",
        num_timesteps: int = 1000,
        denoise_target: str = "feature",
        disrupt_mode: str = "attn_mask",
        disrupt_both: bool = False,
        penalty_layers: list[int] | None = None,
        lambda_den: float = 1.0,
        lambda_dis: float = 0.1,
        norm_pix_loss: bool = True,
        base_lr: float | None = 1.5e-4,
        lr_batch_divisor: int = 256,
        **kwargs,
    ) -> None:
        super().__init__(encoder=encoder, masking=masking, base_lr=base_lr, lr_batch_divisor=lr_batch_divisor, **kwargs)
        self.save_hparams("encoder", "masking")
        if getattr(encoder, "mask_token", None) is None:
            raise ValueError("NoiseMIM: the encoder needs a mask token (ViT(mask_token=True))")
        if disrupt_mode not in DISRUPT_MODES:
            raise ValueError(f"NoiseMIM: disrupt_mode must be one of {DISRUPT_MODES}, got {disrupt_mode!r}")
        if denoise_target not in ("feature", "pixel"):
            raise ValueError(f"NoiseMIM: denoise_target must be 'feature' or 'pixel', got {denoise_target!r}")
        if not 0 <= noise_layer < encoder.depth:
            raise ValueError(f"NoiseMIM: noise_layer {noise_layer} out of range for depth {encoder.depth}")
        if not 0.0 <= noise_ratio < 1.0:
            raise ValueError(f"NoiseMIM: noise_ratio must be in [0, 1), got {noise_ratio}")
        self.noise_ratio = noise_ratio
        self.noise_layer = noise_layer
        self.denoise_target = denoise_target
        self.disrupt_mode = disrupt_mode
        self.disrupt_both = disrupt_both
        self.penalty_layers = list(penalty_layers) if penalty_layers is not None else [0, -1]
        self.lambda_den = lambda_den
        self.lambda_dis = lambda_dis
        self.norm_pix_loss = norm_pix_loss
        self.register_buffer("alpha_bar", alpha_bar_schedule(noise_schedule, num_timesteps), persistent=False)
        D, p = encoder.embed_dim, encoder.patch_size
        self.pixel_head = nn.Linear(D, p * p * encoder.in_chans)
        self.feature_head = nn.Linear(D, D) if denoise_target == "feature" else None
        for m in (self.pixel_head, self.feature_head):
            if m is not None:
                nn.init.xavier_uniform_(m.weight)
                nn.init.zeros_(m.bias)

    def noise_selection(self, masks: MaskOutput) -> Tensor:
        """``(B, L)`` bool: ``floor(noise_ratio * min_keep)`` random visible tokens per image (disjoint from masked)."""
        B, L = masks.mask.shape
        n = int(self.noise_ratio * masks.min_keep)  # host-known bound: no device read
        sel = torch.zeros(B, L, dtype=torch.bool, device=masks.mask.device)
        if n == 0:
            return sel
        score = torch.rand(B, L, device=masks.mask.device) + 2.0 * masks.mask  # masked tokens sort last
        sel.scatter_(1, torch.argsort(score, dim=1)[:, :n], True)
        return sel

    def _attn_mask(self, is_mask: Tensor, is_noised: Tensor) -> Tensor | None:
        if self.disrupt_mode != "attn_mask":
            return None
        block = is_mask[:, :, None] & is_noised[:, None, :]  # masked query -> noised key
        if self.disrupt_both:
            block = block | (is_noised[:, :, None] & is_mask[:, None, :])
        return (~block)[:, None]  # (B, 1, N, N), True = may attend

    def encode(self, images: Tensor, masks: MaskOutput, batch: dict[str, Tensor]) -> dict[str, Any]:
        enc = self.encoder
        tokens, pos, _ = enc.prepare_tokens(images, mask=masks.mask)
        B, N, D = tokens.shape
        P = enc.num_prefix_tokens
        noised = self.noise_selection(masks)
        pre = noised.new_zeros(B, P)
        is_noised = torch.cat([pre, noised], dim=1)
        is_mask = torch.cat([pre, masks.mask > 0.5], dim=1)
        attn_mask = self._attn_mask(is_mask, is_noised)
        depth = len(enc.blocks)
        pen_layers = {i + depth if i < 0 else i for i in self.penalty_layers} if (
            self.disrupt_mode == "penalty" and self.lambda_dis) else set()
        clean = None
        dis = tokens.new_zeros(())
        for i, blk in enumerate(enc.blocks):
            if i == self.noise_layer:
                clean = tokens[:, P:].detach()
                t = torch.randint(0, self.alpha_bar.numel(), (B,), device=tokens.device)
                ab = self.alpha_bar[t].to(tokens.dtype)[:, None, None]
                noisy = ab.sqrt() * tokens + (1 - ab).sqrt() * torch.randn_like(tokens)
                tokens = torch.where(is_noised[..., None], noisy, tokens)
            am = attn_mask if i >= self.noise_layer else None
            if i in pen_layers and i >= self.noise_layer:
                A = attention_probs(blk, tokens, am)  # (B, H, N, N)
                mass = (A * is_noised[:, None, None, :].to(A.dtype)).sum(-1)  # on noised keys
                q = is_mask[:, None, :].to(A.dtype)
                dis = dis + (mass * q).sum() / (q.sum() * A.shape[1]).clamp_min(1.0)
            tokens = enc.forward_block(i, tokens, pos, am)
        if pen_layers:
            dis = dis / len(pen_layers)
        return {"tokens": enc.norm(tokens), "clean": clean, "noised": noised, "dis": dis,
                "num_noised": int(self.noise_ratio * masks.min_keep)}  # host-known count per image

    def decode(self, latent: dict[str, Any], masks: MaskOutput, batch: dict[str, Tensor]) -> dict[str, Any]:
        z = latent["tokens"][:, self.encoder.num_prefix_tokens :]
        out = dict(latent)
        out["pred"] = self.pixel_head(z)
        if self.feature_head is not None:
            out["pred_feature"] = self.feature_head(z)
        return out

    def loss(self, out, images, masks, batch) -> dict[str, Tensor]:
        target = self.target(images)
        mim = masked_mse(out["pred"], target, masks.mask)
        noised = out["noised"].float()
        if out.get("num_noised", 1) == 0:  # decided on the host: no device read
            den = mim.new_zeros(())
        elif self.denoise_target == "pixel":
            den = masked_mse(out["pred"], target, noised)
        else:
            goal = F.layer_norm(out["clean"].float(), out["clean"].shape[-1:])  # stop-grad, scale-free target
            den = masked_mse(out["pred_feature"], goal, noised)
        total = mim + self.lambda_den * den
        losses = {"loss_mim": mim, "loss_den": den}
        if self.disrupt_mode == "penalty":
            losses["loss_dis"] = out["dis"]
            total = total + self.lambda_dis * out["dis"]
        losses["loss"] = total
        return losses

