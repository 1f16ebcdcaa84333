"""MTLoRA (Agiza, Neseem, Reda, "MTLoRA: A Low-Rank Adaptation Approach for Efficient Multi-Task Learning",
CVPR 2024; code `scale-lab/MTLoRA`) on a Swin backbone with per-task HRNet heads.

What follows the official code (shared_mode 'matrix'):

* **TA-LoRA** (task-agnostic) at qkv, proj, fc1, fc2 of every block, rank r ∈ {16, 32, 64}; the scale is a plain
  multiplier ``s = 4.0`` (not α/r); LoRA dropout 0.05 on the shared path's input, which proj's task paths
  (no task input of their own) share.
* **TS-LoRA** (task-specific), rank 4, only in the last block of each stage at proj, fc1, fc2 (qkv stays shared).
  The task branch is ``y_t = W x_shared + b + s B_t A_t x_t``: the frozen term takes the *shared* input and the
  shared-LoRA delta is not added (:class:`MTLoRALinear`). Inside that block
  ``X_t^a = X + proj_t(z)``, ``h_t = GELU(fc1_t(LN2(X^a); x_t = LN2(X_t^a)))``, ``X_t = X_t^a + fc2_t(h; x_t = h_t)``,
  and ``F_t^s = PatchMerging(X_t)`` goes to task t's decoder; the next stage continues from the shared X.
* Trainable: LoRA A/B, patch embedding, every LayerNorm, relative-position tables, PatchMerging reductions;
  biases frozen. With Swin-T, the four PASCAL tasks and HRNet heads this is 4,953,146 / 6,083,642 / 8,344,634
  parameters for r = 16 / 32 / 64.
* **MTLoRA+** (``mtlora_plus=True``): PatchMerging reductions frozen and adapted by a shared LoRA of rank r
  (task features pass through the same adapted merging).
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from vitlab.core.backbones import Swin, window_attention
from vitlab.mtl.module import MultiTaskModule
from vitlab.peft import LoRALinear

__all__ = ["MTLoRA", "MTLoRALinear", "MTLoRASwin", "swin_trainable_base"]


class MTLoRALinear(LoRALinear):
    """A shared LoRA linear (``LoRALinear``) plus per-task low-rank updates on task inputs.

    ``forward(x)`` is the shared path ``W x + b + s B A drop(x)``; :meth:`forward_tasks` also returns
    ``W x + b + s B_t A_t x_t`` for every task (``x_t = drop(x)``, the shared path's dropped input, when a task
    has no input of its own, as the official ``MTLoRALinear.forward``; explicit task inputs are not dropped).
    """

    def __init__(self, in_features: int, out_features: int, rank: int, scale: float, tasks: list[str],
                 task_rank: int, task_scale: float, dropout: float = 0.0, bias: bool = True, device=None,
                 dtype=None) -> None:
        super().__init__(in_features, out_features, rank, scale, dropout, bias=bias, device=device, dtype=dtype)
        self.tasks = list(tasks)
        self.task_rank = task_rank
        self.task_scale = task_scale
        self.task_A = nn.ParameterDict({t: nn.Parameter(torch.empty(task_rank, in_features, device=device, dtype=dtype))
                                        for t in tasks})
        self.task_B = nn.ParameterDict({t: nn.Parameter(torch.zeros(out_features, task_rank, device=device, dtype=dtype))
                                        for t in tasks})
        for a in self.task_A.values():
            nn.init.kaiming_uniform_(a, a=math.sqrt(5))

    @classmethod
    def from_linear(cls, base: nn.Linear, rank: int, scale: float, dropout: float = 0.0, *, tasks: list[str] = (),
                    task_rank: int = 4, task_scale: float = 4.0) -> MTLoRALinear:
        w = base.weight
        m = cls(base.in_features, base.out_features, rank, scale, list(tasks), task_rank, task_scale, dropout,
                bias=base.bias is not None, device=w.device, dtype=w.dtype)
        m.weight, m.bias = base.weight, base.bias
        return m

    def forward_tasks(self, x: Tensor, task_inputs: dict[str, Tensor] | None = None) -> tuple[Tensor, dict[str, Tensor]]:
        base = F.linear(x, self.weight, self.bias)
        dropped = self.lora_dropout(x)
        shared = base + self.scale * F.linear(F.linear(dropped, self.lora_A), self.lora_B)
        task_inputs = task_inputs or {}
        out = {}
        for t in self.tasks:
            xt = task_inputs.get(t, dropped)
            out[t] = base + self.task_scale * F.linear(F.linear(xt, self.task_A[t]), self.task_B[t])
        return shared, out


def _lora(base: nn.Linear, rank: int, scale: float, dropout: float) -> LoRALinear:
    if isinstance(base, LoRALinear):
        raise TypeError("the Swin backbone already carries LoRA layers; pass an untuned backbone")
    return LoRALinear.from_linear(base, rank, scale, dropout)


def swin_trainable_base(swin: Swin, reductions: bool) -> None:
    """Freeze ``swin``, then unfreeze patch embedding, every LayerNorm, the relative-position tables and, if
    ``reductions``, the PatchMerging reductions (the MTLoRA/TADFormer trainable set, LoRA aside)."""
    swin.requires_grad_(False)
    swin.patch_embed.requires_grad_(True)
    for _name, mod in swin.named_modules():
        if isinstance(mod, nn.LayerNorm):
            mod.requires_grad_(True)
        if hasattr(mod, "relative_position_bias_table"):
            mod.relative_position_bias_table.requires_grad_(True)
    if reductions:
        for s in range(3):
            swin.merging(s).reduction.requires_grad_(True)


class MTLoRASwin(nn.Module):
    """A Swin backbone turned into MTLoRA's multi-task encoder: ``forward(image) -> {task: [F_t^0..F_t^3]}``.

    Args:
        swin: an untuned :class:`vitlab.core.Swin` (pretrained weights already loaded).
        tasks: task names.
        rank: TA-LoRA rank r (16, 32, 64).
        task_rank: TS-LoRA rank (4).
        scale, task_scale: LoRA multipliers (4.0, 4.0).
        dropout: LoRA dropout on the shared path (0.05).
        mtlora_plus: freeze PatchMerging reductions and adapt them with a shared LoRA (MTLoRA+).
    """

    compile_region = True  # ``compile: true`` compiles the whole encoder, as core's Swin (vitlab.core.perf)

    def __init__(self, swin: Swin, tasks: list[str], rank: int = 16, task_rank: int = 4, scale: float = 4.0,
                 task_scale: float = 4.0, dropout: float = 0.05, mtlora_plus: bool = False) -> None:
        super().__init__()
        self.swin = swin
        self.tasks = list(tasks)
        self.out_channels = swin.out_channels
        self.mtlora_plus = mtlora_plus
        swin_trainable_base(swin, reductions=not mtlora_plus)
        for s in range(4):
            blocks = swin.stage_blocks(s)
            for i, blk in enumerate(blocks):
                last = i == len(blocks) - 1
                blk.attn.qkv = _lora(blk.attn.qkv, rank, scale, dropout)
                for parent, name in ((blk.attn, "proj"), (blk.mlp, "fc1"), (blk.mlp, "fc2")):
                    base = getattr(parent, name)
                    if last:
                        layer = MTLoRALinear.from_linear(base, rank, scale, dropout, tasks=self.tasks,
                                                         task_rank=task_rank, task_scale=task_scale)
                    else:
                        layer = _lora(base, rank, scale, dropout)
                    setattr(parent, name, layer)
            if mtlora_plus and s < 3:
                m = swin.merging(s)
                m.reduction = _lora(m.reduction, rank, scale, dropout)

    def task_block(self, blk: nn.Module, x: Tensor) -> tuple[Tensor, dict[str, Tensor]]:
        """The last block of a stage: shared output and task outputs X_t (all (B, H, W, C))."""
        swin = self.swin
        tokens, mask, part = swin.partition(blk, blk.norm1(x))
        z, _, _ = window_attention(blk.attn, tokens, mask)
        y, y_t = blk.attn.proj.forward_tasks(z)
        xa = x + blk.drop_path1(swin.unpartition(y, part))
        xa_t = {t: x + blk.drop_path1(swin.unpartition(y_t[t], part)) for t in self.tasks}
        n = blk.norm2(xa)
        h, h_t = blk.mlp.fc1.forward_tasks(n, {t: blk.norm2(xa_t[t]) for t in self.tasks})
        g = blk.mlp.act(h)
        o, o_t = blk.mlp.fc2.forward_tasks(g, {t: blk.mlp.act(h_t[t]) for t in self.tasks})
        return xa + blk.drop_path2(o), {t: xa_t[t] + blk.drop_path2(o_t[t]) for t in self.tasks}

    def forward(self, image: Tensor) -> dict[str, list[Tensor]]:
        swin = self.swin
        x = swin.patch_embed(image)
        feats: dict[str, list[Tensor]] = {t: [] for t in self.tasks}
        for s in range(4):
            blocks = swin.stage_blocks(s)
            for blk in blocks[:-1]:
                x, _ = swin.block_forward(blk, x)
            x, x_t = self.task_block(blocks[-1], x)
            for t in self.tasks:
                feats[t].append(swin.merge(s, x_t[t]).permute(0, 3, 1, 2))
            x = swin.merge(s, x)
        return tie_dead_shared_path(feats, x)


def tie_dead_shared_path(feats: dict[str, list[Tensor]], x: Tensor) -> dict[str, list[Tensor]]:
    """The shared output of the very last block feeds nothing (decoders read task features only), so the shared
    fc2 LoRA of that block gets no gradient, exactly as in the official code. The papers' parameter counts include
    it, so it is kept and tied into the graph with weight zero: DDP then runs without ``find_unused_parameters``
    and the outputs are unchanged."""
    first = next(iter(feats))
    feats[first][-1] = feats[first][-1] + 0.0 * x.mean()
    return feats


class MTLoRA(MultiTaskModule):
    """MTLoRA on Swin with per-task HRNet decoders (see the module docstring).

    Args:
        backbone: an untuned :class:`vitlab.core.Swin` (``size: tiny, img_size: 448`` and its weights).
        tasks, num_outputs, loss_weights, reference, head_widths: see :class:`~vitlab.mtl.MultiTaskModule`.
        rank, task_rank, scale, task_scale, dropout, mtlora_plus: see :class:`MTLoRASwin`.
        **kwargs: optimizer and schedule options of :class:`vitlab.core.VitlabModule`. MTLoRA's recipe: AdamW
            (0.9, 0.999), wd 0.05, lr 5e-4·batch/512, 20 warmup epochs, cosine, gradient clip 5.
    """

    def __init__(self, backbone: Swin, tasks: list[str], rank: int = 16, task_rank: int = 4, scale: float = 4.0,
                 task_scale: float = 4.0, dropout: float = 0.05, mtlora_plus: bool = False,
                 num_outputs: dict[str, int] | None = None, loss_weights: dict[str, float] | None = None,
                 reference: str | dict[str, float] | None = None, head_widths: list[int] | None = None,
                 **kwargs: Any) -> None:
        if not isinstance(backbone, Swin):
            raise TypeError(f"MTLoRA needs a vitlab.core.Swin backbone, got {type(backbone).__name__}")
        encoder = MTLoRASwin(backbone, tasks, rank, task_rank, scale, task_scale, dropout, mtlora_plus)
        super().__init__(backbone=encoder, tasks=tasks, num_outputs=num_outputs, loss_weights=loss_weights,
                         reference=reference, head_widths=head_widths, **kwargs)
        self.save_hparams("backbone")

    def encode(self, image: Tensor) -> dict[str, list[Tensor]]:
        return self.backbone(image)
