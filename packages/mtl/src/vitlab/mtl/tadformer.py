"""TADFormer (Baek, Lee, Jo, Choi, Min, "TADFormer: Task-Adaptive Dynamic TransFormer for Efficient Multi-Task
Learning", CVPR 2025; code `Min100KM/TADFormer`) on a Swin backbone with per-task HRNet heads.

It keeps MTLoRA's skeleton (:mod:`vitlab.mtl.mtlora`: Swin-T at 448, HRNet decoders, losses, recipe) and changes:

1. **Task prompts** (VPT-shallow style, ``prompt_len`` = 1 per task) prepended at the input of stage 1 and
   carried through every block: inside window attention the normalised prompts join every window, bias and
   shift mask only touch the patch-patch block, and the per-window prompt outputs (after ``proj``) are averaged
   over windows; the prompts are then updated ``P ← P + DropPath(MLP(LN2(P_attn)))`` (no attention residual, as
   in the code; skipped in the very last block). At each PatchMerging ``P ← task_prompts_up(P)``
   (Linear C→2C, no bias, truncated-normal init std 0.02 as the official ``_init_weights``). Prompt init: ones,
   then truncated normal with mean 1, std 1.
2. **TS-Module**: shared LoRA (rank r, multiplier 4, dropout 0.05) at qkv, proj, fc1, fc2 of every block.
3. **Task-adapting block** = the last block of each stage:

   * **TPC**: from the raw prompt→patch logits ``a_t`` (before scale, bias and softmax) and the attention output
     z (proj input), ``s_t = GELU(a_t) ⊙ drop(z)`` per head channel group and ``f_t = LN_p(drop(z) + s_t)`` (one
     LN_p per stage, shared by the tasks). ``drop`` is proj's LoRA dropout with the shared path's mask: the
     official ``proj`` drops its input once and hands the dropped tensor to the task path.
   * **TA-Module** at proj, fc1, fc2 (:class:`TALinear`): the *same* shared LoRA A/B with a **dynamic task
     filter** between them: ``u_t = x_t Aᵀ`` on a spatial grid (7×7 windows for proj, the whole stage map for
     fc1/fc2), ``θ_t = FilterNorm(Conv1×1(GAP(u_t)))`` (k = 3, DDFNet 'channel' FilterNorm), ``ũ_t = θ_t ⊛ u_t``
     depthwise, ``y_t = W x + b + s ũ_t Bᵀ`` (frozen term on the shared input, as MTLoRA). The DTF is shared by
     the tasks; it is the paper's version (the released code comments it out and uses a static per-task
     depthwise 3×3 filter, available as ``task_filter="static"``).
   * **Stage gate**: ``F_t^s = σ(g_s) S_t + (1 − σ(g_s)) X_t`` with one scalar per stage (init 0), then the frozen
     PatchMerging; ``gate="average"`` is the plain 0.5 ablation. ``S_t`` is the TPC skip feature laid out on the
     stage map (see ``mode``).

``mode`` (:data:`MODES`) chooses between the released forward and a cleaned one; they differ in two places:

* ``"official"`` (default): the released code keeps the skip feature channel-major, (B·nW, C, w²), and reads
  that memory with ``.view`` as (B·nW, w, w, C) before un-windowing, so ``S_t`` mixes channels with positions;
  FilterNorm divides by the *unbiased* std + 1e-10 (DDFNet's code). This is the forward the paper's numbers
  come from, so it is the default: equal to the official code (with the paper's DTF) to float precision
  (``tests/mtl/test_golden_tadformer.py``).
* ``"clean"``: ``S_t`` is the skip feature at its own token positions (as the paper's ``S_inv(a_t ⊗ f)``
  reads: the weighted feature, un-windowed) and FilterNorm uses the biased std + 1e-5. No reported number comes
  from this forward; it is offered for studies of the method as described.

Trainable: LoRA, DTF, prompts, ``task_prompts_up``, gates, LN_p, every LayerNorm, patch embedding,
relative-position tables and the decoders; PatchMerging reductions are frozen. With Swin-T, four PASCAL tasks
and HRNet heads: 3,551,550 / 4,770,174 / 7,373,310 parameters for r = 16 / 32 / 64. The official code counts
5,952 more (3,557,502 / 4,776,126 / 7,379,262, which round to the paper's 3.56 / 4.78 / 7.38 M): it builds a
``prompt_layernorm`` in the ``proj`` of every block, trains and counts it, but only the task-adapting blocks use
it. Those dead LayerNorms are not built here (:func:`official_parameter_count` adds them back).

Reconstruction choice (named argument): with ``prompt_len`` > 1 a task's logits are the mean over its prompts
(the paper and the official code use 1; the official product only broadcasts for 1). Drop-path acts on the task
branches as on the shared one, as in the official code.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from timm.layers import trunc_normal_
from torch import Tensor, nn

from vitlab.core.backbones import Swin, average_over_windows, window_attention
from vitlab.mtl.module import MultiTaskModule
from vitlab.mtl.mtlora import _lora, swin_trainable_base, tie_dead_shared_path
from vitlab.peft import FilterNorm, ICoN, LoRALinear, dynamic_depthwise_conv

__all__ = ["GATES", "MODES", "TASK_FILTERS", "TADFormer", "TADFormerSwin", "TALinear", "official_parameter_count"]

TASK_FILTERS = ("dynamic", "static")
GATES = ("sigmoid", "average")
MODES = ("official", "clean")


class UnbiasedFilterNorm(FilterNorm):
    """DDFNet's channel FilterNorm as TADFormer's code computes it: ``(θ − mean) / (std_unbiased + 1e-10)``
    over the k² taps, then the learnable per-tap ``std`` and ``mean`` (same parameters as :class:`FilterNorm`)."""

    def __init__(self, channels: int, kernel_size: int, eps: float = 1e-10) -> None:
        super().__init__(channels, kernel_size, eps)

    def forward(self, theta: Tensor) -> Tensor:  # (B, C, k²)
        mu = theta.mean(-1, keepdim=True)
        sd = theta.std(-1, keepdim=True, unbiased=True)
        return (theta - mu) / (sd + self.eps) * self.std + self.mean


class TALinear(LoRALinear):
    """Shared LoRA linear whose task path filters the LoRA bottleneck with a dynamic task filter (DTF).

    ``forward(x)``: ``W x + b + s B A drop(x)`` (shared). :meth:`forward_task`: ``W x + b + s · DTF(x_t Aᵀ) Bᵀ``
    with ``x_t`` given channels-last on its grid (B', h, w, C).

    Args:
        task_filter: ``"dynamic"`` (paper: one input-conditioned kernel generator shared by all tasks,
            r²k² + 3rk² parameters) or ``"static"`` (released code: a depthwise k×k conv per task, 10r each).
        tasks: task names (static filter only).
        kernel_size: k (3).
        mode: ``"official"`` (FilterNorm with the unbiased std + 1e-10, as the released code) or ``"clean"``
            (biased std + 1e-5); see the module docstring.
    """

    def __init__(self, in_features: int, out_features: int, rank: int, scale: float, dropout: float = 0.0,
                 bias: bool = True, task_filter: str = "dynamic", tasks: list[str] = (), kernel_size: int = 3,
                 mode: str = "official", device=None, dtype=None) -> None:
        super().__init__(in_features, out_features, rank, scale, dropout, bias=bias, device=device, dtype=dtype)
        if task_filter not in TASK_FILTERS:
            raise ValueError(f"task_filter must be one of {TASK_FILTERS}, got {task_filter!r}")
        if mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
        self.task_filter = task_filter
        if task_filter == "dynamic":
            self.dtf = ICoN(rank, kernel_size, filter_norm=True)
            if mode == "official":
                self.dtf.norm = UnbiasedFilterNorm(rank, kernel_size)
        else:
            self.static = nn.ModuleDict({t: nn.Conv2d(rank, rank, kernel_size, padding=kernel_size // 2, groups=rank)
                                         for t in tasks})

    @classmethod
    def from_linear(cls, base: nn.Linear, rank: int, scale: float, dropout: float = 0.0, *,
                    task_filter: str = "dynamic", tasks: list[str] = (), mode: str = "official") -> TALinear:
        if isinstance(base, LoRALinear):
            raise TypeError("the Swin backbone already carries LoRA layers; pass an untuned backbone")
        w = base.weight
        m = cls(base.in_features, base.out_features, rank, scale, dropout, bias=base.bias is not None,
                task_filter=task_filter, tasks=tasks, mode=mode, device=w.device, dtype=w.dtype)
        m.weight, m.bias = base.weight, base.bias
        return m

    def filter(self, u: Tensor, task: str) -> Tensor:
        """(B', r, h, w) → filtered bottleneck map."""
        if self.task_filter == "dynamic":
            return dynamic_depthwise_conv(u, self.dtf(u))
        return self.static[task](u)

    def forward_task(self, x: Tensor, x_task: Tensor, task: str, base: Tensor | None = None) -> Tensor:
        """``x`` and ``x_task`` channels-last (B', h, w, C); returns (B', h, w, out)."""
        if base is None:
            base = F.linear(x, self.weight, self.bias)
        u = F.linear(x_task, self.lora_A).permute(0, 3, 1, 2)
        u = self.filter(u, task).permute(0, 2, 3, 1)
        return base + self.scale * F.linear(u, self.lora_B)


class TADFormerSwin(nn.Module):
    """A Swin backbone turned into TADFormer's encoder: ``forward(image) -> {task: [F_t^0..F_t^3]}``.

    Args:
        swin: an untuned :class:`vitlab.core.Swin`.
        tasks: task names.
        rank: shared LoRA rank r (16, 32, 64); scale 4.0 and dropout 0.05 as MTLoRA.
        prompt_len: prompts per task (1).
        task_filter: ``"dynamic"`` (paper, default) or ``"static"`` (released code).
        gate: ``"sigmoid"`` (learnable stage gate) or ``"average"`` (0.5 ablation).
        kernel_size: DTF kernel size (3).
        mode: ``"official"`` (released forward, default) or ``"clean"``; see the module docstring.
    """

    compile_region = True  # ``compile: true`` compiles the whole encoder, as core's Swin (vitlab.core.perf)

    def __init__(self, swin: Swin, tasks: list[str], rank: int = 16, scale: float = 4.0, dropout: float = 0.05,
                 prompt_len: int = 1, task_filter: str = "dynamic", gate: str = "sigmoid",
                 kernel_size: int = 3, mode: str = "official") -> None:
        super().__init__()
        if gate not in GATES:
            raise ValueError(f"gate must be one of {GATES}, got {gate!r}")
        if mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
        if prompt_len < 1:
            raise ValueError(f"prompt_len must be >= 1, got {prompt_len}")
        self.swin = swin
        self.tasks = list(tasks)
        self.out_channels = swin.out_channels
        self.prompt_len = prompt_len
        self.gate_mode = gate
        self.mode = mode
        swin_trainable_base(swin, reductions=False)
        for s in range(4):
            blocks = swin.stage_blocks(s)
            for i, blk in enumerate(blocks):
                last = i == len(blocks) - 1
                blk.attn.qkv = _lora(blk.attn.qkv, rank, scale, dropout)
                for parent, name in ((blk.attn, "proj"), (blk.mlp, "fc1"), (blk.mlp, "fc2")):
                    base = getattr(parent, name)
                    layer = (TALinear.from_linear(base, rank, scale, dropout, task_filter=task_filter,
                                                  tasks=self.tasks, mode=mode)
                             if last else _lora(base, rank, scale, dropout))
                    setattr(parent, name, layer)
        dims = swin.dims
        self.task_prompts = nn.Parameter(torch.ones(1, len(self.tasks) * prompt_len, dims[0]))
        trunc_normal_(self.task_prompts, mean=1.0, std=1.0)
        self.task_prompts_up = nn.ModuleList(nn.Linear(dims[s], dims[s + 1], bias=False) for s in range(3))
        for up in self.task_prompts_up:
            trunc_normal_(up.weight, std=0.02)  # the official model's _init_weights for every Linear
        self.tpc_norms = nn.ModuleList(nn.LayerNorm(d) for d in dims)
        self.prompt_gates = nn.Parameter(torch.zeros(4), requires_grad=gate == "sigmoid")

    def _gate(self, s: int) -> Tensor:
        if self.gate_mode == "average":
            return torch.full((), 0.5, device=self.prompt_gates.device, dtype=self.prompt_gates.dtype)
        return torch.sigmoid(self.prompt_gates[s])

    def prompt_block(self, blk: nn.Module, x: Tensor, P: Tensor, update: bool = True) -> tuple[Tensor, Tensor]:
        x, p_attn = self.swin.block_forward(blk, x, prefix=P)
        if update:
            P = P + blk.drop_path2(blk.mlp(blk.norm2(p_attn)))
        return x, P

    def task_block(self, blk: nn.Module, x: Tensor, P: Tensor, s: int, update: bool,
                   ) -> tuple[Tensor, Tensor, dict[str, Tensor]]:
        swin = self.swin
        B, H, W, C = x.shape
        tokens, mask, part = swin.partition(blk, blk.norm1(x))
        pre = blk.norm1(P).repeat_interleave(part.num_windows, dim=0)
        z, zp, logits = window_attention(blk.attn, tokens, mask, prefix=pre, return_logits=True)
        Bw, N, _ = z.shape
        heads = blk.attn.num_heads
        wh, ww = part.window
        proj = blk.attn.proj
        # the official proj drops its input once; the shared LoRA and every task path read the dropped z
        zd = proj.lora_dropout(z)
        zh = zd.view(Bw, N, heads, C // heads)
        base = F.linear(z, proj.weight, proj.bias)
        y = base if proj.merged else base + proj.scale * F.linear(F.linear(zd, proj.lora_A), proj.lora_B)
        z_grid = z.view(Bw, wh, ww, C)
        base = base.view(Bw, wh, ww, -1)
        xa = x + blk.drop_path1(swin.unpartition(y, part))
        n_sh = blk.norm2(xa)
        h_base = F.linear(n_sh, blk.mlp.fc1.weight, blk.mlp.fc1.bias)
        g_sh = blk.mlp.act(blk.mlp.fc1(n_sh))
        o_base = F.linear(g_sh, blk.mlp.fc2.weight, blk.mlp.fc2.bias)
        gate = self._gate(s)
        L = self.prompt_len
        feats = {}
        for k, t in enumerate(self.tasks):
            a_t = logits[:, :, k * L:(k + 1) * L].mean(2)  # (Bw, heads, N)
            s_t = (F.gelu(a_t).transpose(1, 2).unsqueeze(-1) * zh).reshape(Bw, N, C)
            f_t = self.tpc_norms[s](zd + s_t)
            y_t = proj.forward_task(z_grid, f_t.view(Bw, wh, ww, C), t, base=base)
            xa_t = x + blk.drop_path1(swin.unpartition(y_t.reshape(Bw, N, C), part))
            h_t = blk.mlp.fc1.forward_task(n_sh, blk.norm2(xa_t), t, base=h_base)
            o_t = blk.mlp.fc2.forward_task(g_sh, blk.mlp.act(h_t), t, base=o_base)
            x_t = xa_t + blk.drop_path2(o_t)
            if self.mode == "official":  # channel-major memory read as (w², C), as the released stage gate
                s_t = s_t.transpose(1, 2).contiguous().view(Bw, N, C)
            feats[t] = gate * swin.unpartition(s_t, part) + (1 - gate) * x_t
        x = xa + blk.drop_path2(blk.mlp.fc2(g_sh))
        if update:
            p_attn = average_over_windows(proj(zp), B)
            P = P + blk.drop_path2(blk.mlp(blk.norm2(p_attn)))
        return x, P, feats

    def forward(self, image: Tensor) -> dict[str, list[Tensor]]:
        swin = self.swin
        x = swin.patch_embed(image)
        P = self.task_prompts.expand(x.shape[0], -1, -1)
        feats: dict[str, list[Tensor]] = {t: [] for t in self.tasks}
        for s in range(4):
            blocks = swin.stage_blocks(s)
            for blk in blocks[:-1]:
                x, P = self.prompt_block(blk, x, P)
            x, P, f = self.task_block(blocks[-1], x, P, s, update=s < 3)
            for t in self.tasks:
                feats[t].append(swin.merge(s, f[t]).permute(0, 3, 1, 2))
            x = swin.merge(s, x)
            if s < 3:
                P = self.task_prompts_up[s](P)
        return tie_dead_shared_path(feats, x)


class TADFormer(MultiTaskModule):
    """TADFormer on Swin with per-task HRNet decoders (see the module docstring).

    Args:
        backbone: an untuned :class:`vitlab.core.Swin` (``size: tiny, img_size: 448`` and its weights).
        tasks, num_outputs, loss_weights, reference, head_widths: see :class:`~vitlab.mtl.MultiTaskModule`.
        rank, scale, dropout, prompt_len, task_filter, gate, kernel_size, mode: see :class:`TADFormerSwin`.
        **kwargs: optimizer and schedule options of :class:`vitlab.core.VitlabModule` (MTLoRA's recipe).
    """

    def __init__(self, backbone: Swin, tasks: list[str], rank: int = 16, scale: float = 4.0, dropout: float = 0.05,
                 prompt_len: int = 1, task_filter: str = "dynamic", gate: str = "sigmoid", kernel_size: int = 3,
                 mode: str = "official", num_outputs: dict[str, int] | None = None, loss_weights: dict[str, float] | None = None,
                 reference: str | dict[str, float] | None = None, head_widths: list[int] | None = None,
                 **kwargs: Any) -> None:
        if not isinstance(backbone, Swin):
            raise TypeError(f"TADFormer needs a vitlab.core.Swin backbone, got {type(backbone).__name__}")
        encoder = TADFormerSwin(backbone, tasks, rank, scale, dropout, prompt_len, task_filter, gate, kernel_size,
                                mode)
        super().__init__(backbone=encoder, tasks=tasks, num_outputs=num_outputs, loss_weights=loss_weights,
                         reference=reference, head_widths=head_widths, **kwargs)
        self.save_hparams("backbone")

    def encode(self, image: Tensor) -> dict[str, list[Tensor]]:
        return self.backbone(image)


def official_parameter_count(model: nn.Module) -> int:
    """Trainable parameters as the official TADFormer code counts them: this model's plus the ``proj``
    ``prompt_layernorm`` (weight + bias, C each) that the official code builds, trains and counts in every block
    that is *not* a task-adapting block, where it is never used (5,952 for Swin-T)."""
    encoders = [m for m in model.modules() if isinstance(m, TADFormerSwin)]
    if len(encoders) != 1:
        raise ValueError(f"official_parameter_count: expected one TADFormerSwin in the model, found {len(encoders)}")
    swin = encoders[0].swin
    dead = sum(2 * swin.dims[s] * (len(swin.stage_blocks(s)) - 1) for s in range(4))
    return sum(p.numel() for p in model.parameters() if p.requires_grad) + dead
