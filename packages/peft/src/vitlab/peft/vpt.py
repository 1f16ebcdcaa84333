"""Visual Prompt Tuning (Jia et al., "Visual Prompt Tuning", ECCV 2022, `KMnP/vpt`).

Learned prompt tokens are inserted right after the class token: ``[CLS ; P ; patches]``.
*Shallow* VPT inserts ``n`` prompts once, before the first block, and they flow through the network;
*deep* VPT additionally replaces the prompt slots with fresh learned prompts at the input of every
later block. Prompts are initialised uniform(±√(6 / (3·p² + D))) (the paper's Xavier rule over the
patch fan-in), optional prompt dropout as in the official code.

Integration with the vitlab ViT: prompts count as *prefix tokens*. The backbone's ``num_prefix_tokens``
grows by ``n`` after tuning, so ``forward_intermediates`` still strips them and dense heads get
``(B, D, h, w)`` maps, ``pool`` still reads the class token (or averages patch tokens only), and RoPE
leaves them unrotated like the class token. The position table keeps its pretrained layout: the
backbone's ``prepare_tokens`` is wrapped to embed with the original prefix count, then insert the
prompts. Deep prompts are swapped in by forward pre-hooks on the blocks (``blocks.i.vpt_prompt``).
"""

from __future__ import annotations

import math
import types

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from vitlab.peft.base import PeftTuner, blocks_of


def _insert(x: Tensor, prompt: Tensor, offset: int, replace: int, p_drop: float, training: bool) -> Tensor:
    """``x[:, :offset] ; prompt ; x[:, offset + replace:]`` with the prompt broadcast over the batch."""
    prompt = F.dropout(prompt, p_drop, training).to(x.dtype).expand(x.shape[0], -1, -1)
    return torch.cat([x[:, :offset], prompt, x[:, offset + replace:]], dim=1)


def _prompted_prepare_tokens(self: nn.Module, x: Tensor, ids_keep: Tensor | None = None,
                             mask: Tensor | None = None):
    """``ViT.prepare_tokens`` with the original prefix count, then the shallow prompts inserted."""
    total, base = self.num_prefix_tokens, self.vpt_base_prefix
    self.num_prefix_tokens = base  # the pretrained position table knows only the original prefix tokens
    try:
        tokens, pos, grid = type(self).prepare_tokens(self, x, ids_keep=ids_keep, mask=mask)
    finally:
        self.num_prefix_tokens = total
    tokens = _insert(tokens, self.vpt_prompt, base, 0, self.vpt_dropout, self.training)
    if pos is not None:  # RoPE: positions for the longer prefix ((0, 0) = not rotated)
        pos = self._rope_positions(grid[0], grid[1], tokens.device, ids_keep)
    return tokens, pos, grid


def _deep_prompt_hook(block: nn.Module, args: tuple):
    x = _insert(args[0], block.vpt_prompt, block.vpt_offset, block.vpt_prompt.shape[1], block.vpt_dropout,
                block.training)
    return (x, *args[1:])


class VPT(PeftTuner):
    """Visual prompt tuning, shallow or deep.

    Args:
        num_prompts: prompt tokens per layer (10).
        deep: deep prompts (a new set at every block) instead of shallow (input only).
        dropout: prompt dropout (0.0; the official code uses 0.1 on some datasets).
        train_norms: also train the LayerNorms (off).
    """

    def __init__(self, num_prompts: int = 10, deep: bool = False, dropout: float = 0.0,
                 train_norms: bool = False) -> None:
        super().__init__(train_norms=train_norms)
        if num_prompts < 1:
            raise ValueError(f"num_prompts must be >= 1, got {num_prompts}")
        self.num_prompts = num_prompts
        self.deep = deep
        self.dropout = dropout

    def _new_prompt(self, backbone: nn.Module) -> nn.Parameter:
        D = int(backbone.embed_dim)
        ref = backbone.patch_embed.proj.weight
        fan_in = ref[0].numel()  # in_chans · p²
        bound = math.sqrt(6.0 / (fan_in + D))
        return nn.Parameter(torch.empty(1, self.num_prompts, D, device=ref.device, dtype=ref.dtype).uniform_(-bound, bound))

    def _modify(self, backbone: nn.Module) -> None:
        for attr in ("prepare_tokens", "num_prefix_tokens", "embed_dim", "patch_embed", "_rope_positions"):
            if not hasattr(backbone, attr):
                raise TypeError(f"VPT needs a vitlab ViT backbone (missing `{attr}`)")
        base = int(backbone.num_prefix_tokens)
        backbone.vpt_prompt = self._new_prompt(backbone)
        backbone.vpt_base_prefix = base
        backbone.vpt_dropout = float(self.dropout)
        backbone.num_prefix_tokens = base + self.num_prompts
        backbone.prepare_tokens = types.MethodType(_prompted_prepare_tokens, backbone)
        if self.deep:
            for blk in list(blocks_of(backbone))[1:]:
                blk.vpt_prompt = self._new_prompt(backbone)
                blk.vpt_offset = base
                blk.vpt_dropout = float(self.dropout)
                blk.register_forward_pre_hook(_deep_prompt_hook)
