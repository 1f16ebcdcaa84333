"""LoRA (Hu et al., "LoRA: Low-Rank Adaptation of Large Language Models", ICLR 2022) for the vitlab ViT.

``y = W x + b + s · B A drop(x)`` with frozen ``W, b``, trainable ``A ∈ R^{r×din}`` (kaiming-uniform,
a=√5) and ``B ∈ R^{dout×r}`` (zeros, so the tuned model equals the backbone at start). The scale ``s`` is
either ``alpha / rank`` (the LoRA paper, HF peft) or a plain multiplier ``alpha`` (MTLoRA,
`scale-lab/MTLoRA`, uses ``s = 4.0`` independent of the rank). LoRA dropout 0.05 follows MTLoRA.

:class:`LoRALinear` subclasses ``nn.Linear`` and keeps its ``weight``/``bias`` names, so pretrained
checkpoints load into a tuned backbone unchanged; only ``lora_A``/``lora_B`` are new keys.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from vitlab.peft.base import PeftTuner, select_blocks

#: target name -> attribute path inside a timm/vitlab block
LORA_TARGETS = {"qkv": ("attn", "qkv"), "proj": ("attn", "proj"), "fc1": ("mlp", "fc1"), "fc2": ("mlp", "fc2")}
SCALINGS = ("alpha/rank", "multiplier")


class LoRALinear(nn.Linear):
    """A frozen linear layer plus a trainable low-rank update; ``merge()`` folds it into ``weight``."""

    def __init__(self, in_features: int, out_features: int, rank: int, scale: float, dropout: float = 0.0,
                 bias: bool = True, device=None, dtype=None) -> None:
        super().__init__(in_features, out_features, bias=bias, device=device, dtype=dtype)
        if rank < 1:
            raise ValueError(f"LoRA rank must be >= 1, got {rank}")
        self.rank = rank
        self.scale = scale
        self.lora_A = nn.Parameter(torch.empty(rank, in_features, device=device, dtype=dtype))
        self.lora_B = nn.Parameter(torch.zeros(out_features, rank, device=device, dtype=dtype))
        self.lora_dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        # Whether BA is folded into `weight`, saved with the state dict so a reloaded merged model is not
        # merged twice; forward reads the Python mirror `merged` (no device sync).
        self.register_buffer("lora_merged", torch.zeros((), dtype=torch.bool, device=device))
        self.merged = False
        nn.init.kaiming_uniform_(self.lora_A, a=math.sqrt(5))

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs) -> None:
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)
        flag = state_dict.get(prefix + "lora_merged")
        if flag is not None and flag.device.type != "meta":
            self.merged = bool(flag)

    @classmethod
    def from_linear(cls, base: nn.Linear, rank: int, scale: float, dropout: float = 0.0) -> LoRALinear:
        """Wrap ``base`` sharing its weight and bias tensors (no copy)."""
        w = base.weight
        m = cls(base.in_features, base.out_features, rank, scale, dropout, bias=base.bias is not None,
                device=w.device, dtype=w.dtype)
        m.weight = base.weight
        m.bias = base.bias
        return m

    def delta_weight(self) -> Tensor:
        return self.scale * (self.lora_B @ self.lora_A)

    def forward(self, x: Tensor) -> Tensor:
        y = F.linear(x, self.weight, self.bias)
        if self.merged:
            return y
        return y + self.scale * F.linear(F.linear(self.lora_dropout(x), self.lora_A), self.lora_B)

    @torch.no_grad()
    def merge(self) -> None:
        """``W ← W + s·BA`` for inference without extra cost (idempotent)."""
        if not self.merged:
            self.weight.add_(self.delta_weight().to(self.weight.dtype))
            self.merged = True
            self.lora_merged.fill_(True)

    @torch.no_grad()
    def unmerge(self) -> None:
        """Undo :meth:`merge` (exact up to floating-point rounding)."""
        if self.merged:
            self.weight.sub_(self.delta_weight().to(self.weight.dtype))
            self.merged = False
            self.lora_merged.fill_(False)

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, rank={self.rank}, scale={self.scale:g}, merged={self.merged}"


class LoRA(PeftTuner):
    """Low-rank updates on the linear layers of every (or selected) transformer block.

    Args:
        rank: LoRA rank r (8).
        alpha: LoRA α (8.0). The scale is ``alpha / rank`` or ``alpha`` itself, see ``scaling``.
        scaling: ``"alpha/rank"`` (LoRA paper) or ``"multiplier"`` (MTLoRA: s = α, e.g. 4.0).
        dropout: dropout on the LoRA input (0.05, MTLoRA).
        targets: any of ``qkv``, ``proj``, ``fc1``, ``fc2`` (default ``[qkv]``: the fused q/k/v projection,
            the usual ViT LoRA; MTLoRA adapts all four).
        layers: block indices to adapt (None = all).
        train_norms: also train the LayerNorms (off).
    """

    def __init__(self, rank: int = 8, alpha: float = 8.0, scaling: str = "alpha/rank", dropout: float = 0.05,
                 targets: list[str] | None = None, layers: list[int] | None = None,
                 train_norms: bool = False) -> None:
        super().__init__(train_norms=train_norms)
        targets = list(targets) if targets is not None else ["qkv"]
        bad = [t for t in targets if t not in LORA_TARGETS]
        if bad or not targets:
            raise ValueError(f"LoRA targets must be a non-empty subset of {sorted(LORA_TARGETS)}, got {targets}")
        if scaling not in SCALINGS:
            raise ValueError(f"LoRA scaling must be one of {SCALINGS}, got {scaling!r}")
        if rank < 1:
            raise ValueError(f"LoRA rank must be >= 1, got {rank}")
        self.rank = rank
        self.alpha = alpha
        self.scaling = scaling
        self.dropout = dropout
        self.targets = targets
        self.layers = layers

    @property
    def scale(self) -> float:
        return self.alpha / self.rank if self.scaling == "alpha/rank" else self.alpha

    def _modify(self, backbone: nn.Module) -> None:
        for _, blk in select_blocks(backbone, self.layers):
            for t in self.targets:
                parent_name, child = LORA_TARGETS[t]
                parent = getattr(blk, parent_name)
                base = getattr(parent, child)
                if not isinstance(base, nn.Linear) or isinstance(base, LoRALinear):
                    raise TypeError(f"LoRA: {parent_name}.{child} is {type(base).__name__}, expected a plain nn.Linear")
                setattr(parent, child, LoRALinear.from_linear(base, self.rank, self.scale, self.dropout))

    @staticmethod
    def lora_layers(module: nn.Module) -> list[LoRALinear]:
        return [m for m in module.modules() if isinstance(m, LoRALinear)]

    @classmethod
    def merge(cls, module: nn.Module) -> nn.Module:
        """Fold every LoRA update under ``module`` into its frozen weight (inference); returns ``module``.

        Unmerge before training further or before saving a tuner checkpoint: a merged weight is no longer
        the pretrained one.
        """
        for m in cls.lora_layers(module):
            m.merge()
        return module

    @classmethod
    def unmerge(cls, module: nn.Module) -> nn.Module:
        for m in cls.lora_layers(module):
            m.unmerge()
        return module
