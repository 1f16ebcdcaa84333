"""Bottleneck adapters attached to the attention and/or MLP branch of every ViT block.

* :class:`Adapter` — Houlsby et al., "Parameter-Efficient Transfer Learning for NLP" (ICML 2019):
  *sequential* bottleneck after the attention and after the MLP sub-layer, ``h ← h + up(act(down(h)))``,
  LayerNorms trained too.
* :class:`AdaptFormer` — Chen et al., "AdaptFormer" (NeurIPS 2022, `ShoufaChen/AdaptFormer`): a ReLU
  bottleneck *parallel* to the MLP on the same (normalised) input, added with a fixed scale 0.1.

Adapters hang off the host sub-module (``blocks.i.attn.adapter`` / ``blocks.i.mlp.adapter``) and run in
a forward hook of that host, so the block classes and the pretrained parameter names stay untouched.
The up-projection starts at zero: the tuned backbone equals the pretrained one before training.
``placement="parallel"`` adds ``adapter(host input)`` to the host output, ``"sequential"`` adds
``adapter(host output)`` (the residual of Houlsby's adapter is the host output itself).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from vitlab.peft.base import PeftTuner, select_blocks

PLACEMENTS = ("parallel", "sequential")
BRANCHES = ("attn", "mlp")
ACTIVATIONS = {"relu": nn.ReLU, "gelu": nn.GELU, "none": nn.Identity}


def make_activation(name: str) -> nn.Module:
    if name not in ACTIVATIONS:
        raise ValueError(f"activation must be one of {sorted(ACTIVATIONS)}, got {name!r}")
    return ACTIVATIONS[name]()


class AdapterScale(nn.Module):
    """The output scale ``s`` of an adapter: a fixed float or a learnable scalar."""

    def __init__(self, value: float, learnable: bool = False) -> None:
        super().__init__()
        if learnable:
            self.value = nn.Parameter(torch.tensor(float(value)))
        else:
            self.register_buffer("value", torch.tensor(float(value)), persistent=False)

    def forward(self, x: Tensor) -> Tensor:
        return x * self.value.to(x.dtype)


class BottleneckAdapter(nn.Module):
    """``s · up(drop(act(down(x))))``: ``down`` kaiming-uniform (a=√5, AdaptFormer), ``up`` and biases zero."""

    def __init__(self, dim: int, bottleneck: int, activation: str = "relu", scale: float = 1.0,
                 learnable_scale: bool = False, dropout: float = 0.0, placement: str = "parallel") -> None:
        super().__init__()
        if placement not in PLACEMENTS:
            raise ValueError(f"placement must be one of {PLACEMENTS}, got {placement!r}")
        if bottleneck < 1:
            raise ValueError(f"bottleneck must be >= 1, got {bottleneck}")
        self.placement = placement
        self.down = nn.Linear(dim, bottleneck)
        self.act = make_activation(activation)
        self.drop = nn.Dropout(dropout)
        self.up = nn.Linear(bottleneck, dim)
        self.scale = AdapterScale(scale, learnable_scale)
        nn.init.kaiming_uniform_(self.down.weight, a=math.sqrt(5))
        nn.init.zeros_(self.down.bias)
        nn.init.zeros_(self.up.weight)
        nn.init.zeros_(self.up.bias)

    def forward(self, x: Tensor) -> Tensor:
        return self.scale(self.up(self.drop(self.act(self.down(x)))))


def _adapter_hook(module: nn.Module, args: tuple, output: Tensor) -> Tensor:
    adapter = module.adapter
    source = args[0] if adapter.placement == "parallel" else output
    return output + adapter(source)


def attach_adapter(host: nn.Module, adapter: nn.Module) -> None:
    """Register ``adapter`` as ``host.adapter`` and add its output to the host's in a forward hook."""
    if hasattr(host, "adapter"):
        raise RuntimeError(f"{type(host).__name__} already carries an adapter")
    host.adapter = adapter
    host.register_forward_hook(_adapter_hook)


class AdapterTuner(PeftTuner):
    """Shared machinery: one adapter per selected branch of each selected block.

    Args:
        branches: host sub-modules, any of ``attn`` and ``mlp``.
        placement: ``parallel`` or ``sequential`` (see the module docstring).
        layers: block indices (None = all).
        train_norms: also train the LayerNorms.
    """

    def __init__(self, branches: list[str], placement: str, layers: list[int] | None, train_norms: bool) -> None:
        super().__init__(train_norms=train_norms)
        branches = list(branches)
        if not branches or any(b not in BRANCHES for b in branches):
            raise ValueError(f"branches must be a non-empty subset of {BRANCHES}, got {branches}")
        if placement not in PLACEMENTS:
            raise ValueError(f"placement must be one of {PLACEMENTS}, got {placement!r}")
        self.branches = branches
        self.placement = placement
        self.layers = layers

    def make_adapter(self, dim: int, backbone: nn.Module) -> nn.Module:
        raise NotImplementedError

    def _modify(self, backbone: nn.Module) -> None:
        dim = int(backbone.embed_dim)
        ref = next(backbone.parameters())
        for _, blk in select_blocks(backbone, self.layers):
            for b in self.branches:
                attach_adapter(getattr(blk, b), self.make_adapter(dim, backbone).to(ref.device, ref.dtype))


class Adapter(AdapterTuner):
    """Houlsby adapters: sequential bottlenecks after attention and MLP, LayerNorms trained.

    Args:
        bottleneck: hidden width (64).
        activation: ``gelu`` (default), ``relu`` or ``none``.
        scale: output multiplier (1.0; Houlsby has none).
        branches: ``[attn, mlp]`` (Houlsby) or a subset.
        placement: ``sequential`` (Houlsby) or ``parallel``.
        dropout: dropout inside the bottleneck (0).
        layers: block indices (None = all).
        train_norms: train the LayerNorms (True, as in Houlsby et al.).
    """

    def __init__(self, bottleneck: int = 64, activation: str = "gelu", scale: float = 1.0,
                 branches: list[str] | None = None, placement: str = "sequential", dropout: float = 0.0,
                 layers: list[int] | None = None, train_norms: bool = True) -> None:
        super().__init__(branches if branches is not None else ["attn", "mlp"], placement, layers, train_norms)
        self.bottleneck = bottleneck
        self.activation = activation
        self.scale = scale
        self.dropout = dropout

    def make_adapter(self, dim: int, backbone: nn.Module) -> nn.Module:
        return BottleneckAdapter(dim, self.bottleneck, self.activation, self.scale, dropout=self.dropout,
                                 placement=self.placement)


class AdaptFormer(AdapterTuner):
    """AdaptFormer: a ReLU bottleneck parallel to the MLP, output scaled by 0.1.

    Args:
        bottleneck: hidden width (64, the paper's ViT-B setting).
        scale: output scale s (0.1).
        learnable_scale: make s a trainable scalar (off: the paper's fixed 0.1).
        activation: ``relu`` (paper), ``gelu`` or ``none``.
        dropout: dropout inside the bottleneck (0).
        layers: block indices (None = all).
        train_norms: also train the LayerNorms (off).
    """

    def __init__(self, bottleneck: int = 64, scale: float = 0.1, learnable_scale: bool = False,
                 activation: str = "relu", dropout: float = 0.0, layers: list[int] | None = None,
                 train_norms: bool = False) -> None:
        super().__init__(["mlp"], "parallel", layers, train_norms)
        self.bottleneck = bottleneck
        self.scale = scale
        self.learnable_scale = learnable_scale
        self.activation = activation
        self.dropout = dropout

    def make_adapter(self, dim: int, backbone: nn.Module) -> nn.Module:
        return BottleneckAdapter(dim, self.bottleneck, self.activation, self.scale, self.learnable_scale,
                                 self.dropout, placement="parallel")
