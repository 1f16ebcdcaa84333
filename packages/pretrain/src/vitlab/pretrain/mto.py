"""MTO — Masked Token Optimization (Choi et al., "Emerging Property of Masked Token for Effective
Pre-training", ECCV 2024, arXiv 2404.08330) as a plug-in for MAE and SimMIM.

What the abstract fixes [paper]: a mask token should have *data singularity* (be distinct from, and minimally
correlated with, visible tokens); MTO adds three losses ``L_spa, L_e, L_r`` and a *weight recalibration*
to any MIM method that uses mask tokens (SimMIM, MAE, ...), claiming ~50% fewer pre-training epochs.

Everything below is **reconstruction [inferred]**: the paper's formulas, weights, layers and recalibration
rule are not available and no official code exists. Each term is a named, switchable option (weight 0 =
off); they act on the softmax attention ``A`` of the blocks that process mask tokens (SimMIM: encoder,
MAE: decoder), with ``V`` = visible (and prefix) queries and ``M`` = mask-token keys:

* ``L_spa`` (data singularity as attention sparsity): ``mean_{i in V} sum_{j in M} A_ij`` — visible tokens
  should draw little information from mask tokens.
* ``L_e`` (entropy heterogeneity): normalised entropy of a visible query's attention restricted to ``M``,
  times ``entropy_sign`` (default -1: maximise it, so no mask token is singled out as if it carried content).
* ``L_r`` (decorrelation): mean squared cosine similarity between mask-token and visible-token features at
  the block input.
* weight recalibration (``recalib_mode="attn_bias"``): an additive bias ``-beta(t)`` on the attention logits
  from visible queries to mask-token keys, ``beta`` decaying linearly from ``recalib_strength`` to 0 over the
  first ``recalib_fraction`` of training (early down-weighting of mask tokens; ``"none"`` = off).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from vitlab.pretrain.base import attention_probs

__all__ = ["MTO"]

RECALIB_MODES = ("none", "attn_bias")


class MTO:
    """Masked-token optimisation terms (all [inferred], see the module docstring).

    Args:
        lambda_spa: weight of ``L_spa`` (0.1).
        lambda_e: weight of ``L_e`` (0.01).
        lambda_r: weight of ``L_r`` (0.1).
        layers: indices of the blocks whose attention/inputs the losses use (negative from the end); ([0, -1]).
        entropy_sign: +1 minimises, -1 maximises the masked-key attention entropy (-1).
        recalib_mode: ``"attn_bias"`` or ``"none"``.
        recalib_strength: initial logit bias ``beta_0`` (2.0).
        recalib_fraction: fraction of training over which ``beta`` decays to 0 (0.25).
    """

    def __init__(
        self,
        lambda_spa: float = 0.1,
        lambda_e: float = 0.01,
        lambda_r: float = 0.1,
        layers: list[int] | None = None,
        entropy_sign: float = -1.0,
        recalib_mode: str = "attn_bias",
        recalib_strength: float = 2.0,
        recalib_fraction: float = 0.25,
    ) -> None:
        if recalib_mode not in RECALIB_MODES:
            raise ValueError(f"MTO: recalib_mode must be one of {RECALIB_MODES}, got {recalib_mode!r}")
        self.lambda_spa = float(lambda_spa)
        self.lambda_e = float(lambda_e)
        self.lambda_r = float(lambda_r)
        self.layers = list(layers) if layers is not None else [0, -1]
        self.entropy_sign = float(entropy_sign)
        self.recalib_mode = recalib_mode
        self.recalib_strength = float(recalib_strength)
        self.recalib_fraction = float(recalib_fraction)

    @property
    def needs_losses(self) -> bool:
        return any(w != 0 for w in (self.lambda_spa, self.lambda_e, self.lambda_r))

    def layer_indices(self, depth: int) -> list[int]:
        out = []
        for i in self.layers:
            j = i + depth if i < 0 else i
            if not 0 <= j < depth:
                raise ValueError(f"MTO: layer {i} out of range for {depth} blocks")
            out.append(j)
        return sorted(set(out))

    def beta(self, progress: float) -> float:
        """Recalibration bias at training progress ``progress`` in [0, 1]."""
        if self.recalib_mode == "none" or self.recalib_fraction <= 0:
            return 0.0
        return self.recalib_strength * max(0.0, 1.0 - progress / self.recalib_fraction)

    def attn_bias(self, is_mask: Tensor, progress: float) -> Tensor | None:
        """``(B, 1, N, N)`` additive logits: ``-beta`` from non-mask queries to mask-token keys, else 0."""
        beta = self.beta(progress)
        if beta == 0.0:
            return None
        vis_q = (~is_mask).float()[:, None, :, None]
        mask_k = is_mask.float()[:, None, None, :]
        return -beta * vis_q * mask_k

    def losses(
        self,
        blocks: Sequence[nn.Module],
        inputs: dict[int, Tensor],
        is_mask: Tensor,
        attn_mask: Tensor | None = None,
    ) -> dict[str, Tensor]:
        """``{"mto_spa", "mto_e", "mto_r", "mto"}`` averaged over the captured ``inputs`` (block index -> input)."""
        vis_q = (~is_mask).float()  # (B, N)
        mask_k = is_mask.float()
        n_vis = vis_q.sum().clamp_min(1.0)
        n_mask_per = mask_k.sum(1).clamp_min(2.0)  # (B,)
        spa = ent = dec = torch.zeros((), device=is_mask.device)
        for i, x in inputs.items():
            if self.lambda_spa or self.lambda_e:
                A = attention_probs(blocks[i], x, attn_mask)  # (B, H, N, N)
                on_mask = A * mask_k[:, None, None, :]
                mass = on_mask.sum(-1)  # (B, H, N)
                w = vis_q[:, None, :]
                spa = spa + (mass * w).sum() / (n_vis * A.shape[1])
                if self.lambda_e:
                    p = on_mask / mass.unsqueeze(-1).clamp_min(1e-8)
                    h = -(p * (p + 1e-12).log()).sum(-1) / torch.log(n_mask_per)[:, None, None]
                    ent = ent + self.entropy_sign * (h * w).sum() / (n_vis * A.shape[1])
            if self.lambda_r:
                xn = F.normalize(x.float(), dim=-1)
                cos2 = (xn @ xn.transpose(1, 2)) ** 2  # (B, N, N)
                pair = vis_q[:, :, None] * mask_k[:, None, :]
                dec = dec + (cos2 * pair).sum() / pair.sum().clamp_min(1.0)
        k = max(len(inputs), 1)
        spa, ent, dec = spa / k, ent / k, dec / k
        total = self.lambda_spa * spa + self.lambda_e * ent + self.lambda_r * dec
        return {"mto_spa": spa, "mto_e": ent, "mto_r": dec, "mto": total}

