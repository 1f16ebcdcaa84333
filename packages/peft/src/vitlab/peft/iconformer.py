"""iConFormer (Jo, Choi, Cho, Min, "iConFormer: Dynamic Parameter-Efficient Tuning with Input-Conditioned
Adaptation", arXiv 2409.02838): a bottleneck adapter whose bottleneck is an *input-conditioned* depthwise
convolution.

What follows the paper (abstract, Fig. 1): a frozen pretrained transformer; a dynamic adapter whose
input-Conditioned Network (iCoN) generates channel-wise convolution kernels for each input and
transforms the features with that adaptive convolution; 1.6-2.8 % of the backbone's parameters trained.
Third-party summaries add that kernels are computed from down-projected features reshaped to the token
grid and that the convolution is depthwise.

What is reconstruction (no code or architecture details are public), each a named option here: the
kernel generator is the dynamic task filter of the same group's TADFormer (CVPR 2025,
`Min100KM/TADFormer`): global average pooling of the bottleneck map, a linear layer r → r·k², and
DDFNet's channel FilterNorm (standardise each k×k kernel, then a learnable per-tap std and mean);
the adapter sits parallel to the MLP on its normalised input with an AdaptFormer output scale of 0.1;
bottleneck r = 64, k = 3, GELU after the down-projection. Prefix tokens (class token, prompts) have no
neighbours on the grid; each is filtered as an isolated 1×1 map, i.e. scaled by the centre tap of its
sample's kernels (so with a class-token head every iCoN parameter still receives a gradient). With these defaults ViT-B trains 1.65 M parameters = 1.93 % of its 85.6 M (the paper's
1.6-2.8 % band); adding the attention branch doubles that to ~3.9 %.

Block flow (parallel, MLP branch): ``X ← X + MHSA(LN1 X);  X ← X + MLP(LN2 X) + s·Up(iConv(Down(LN2 X)))``.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from vitlab.peft.adapters import PLACEMENTS, AdapterScale, AdapterTuner, make_activation


class GridTracker:
    """Remembers the patch grid ``(h, w)`` of the current input: set by a forward pre-hook on the
    backbone's patch embedding, read by every dynamic adapter (token sequences carry no 2-D shape)."""

    def __init__(self, patch_size: tuple[int, int]) -> None:
        self.patch_size = patch_size
        self.grid: tuple[int, int] | None = None

    def __call__(self, module: nn.Module, args: tuple) -> None:
        H, W = args[0].shape[-2:]
        self.grid = (H // self.patch_size[0], W // self.patch_size[1])


class FilterNorm(nn.Module):
    """DDFNet channel filter normalisation (Zhou et al., CVPR 2021): each generated k×k kernel is
    standardised over its k² taps, then scaled and shifted by learnable per-channel, per-tap ``std`` and
    ``mean`` (init ``randn·√2/k`` and ``randn``, as in TADFormer's dynamic task filter)."""

    def __init__(self, channels: int, kernel_size: int, eps: float = 1e-5) -> None:
        super().__init__()
        k2 = kernel_size * kernel_size
        self.eps = eps
        self.std = nn.Parameter(torch.randn(channels, k2) * math.sqrt(2.0) / kernel_size)
        self.mean = nn.Parameter(torch.randn(channels, k2))

    def forward(self, theta: Tensor) -> Tensor:  # (B, C, k²)
        mu = theta.mean(-1, keepdim=True)
        sd = theta.std(-1, keepdim=True, unbiased=False)
        return (theta - mu) / (sd + self.eps) * self.std + self.mean


class ICoN(nn.Module):
    """Input-conditioned kernel generator: ``(B, r, h, w) → (B, r, k, k)`` per-sample depthwise kernels."""

    def __init__(self, channels: int, kernel_size: int = 3, filter_norm: bool = True) -> None:
        super().__init__()
        self.kernel_size = kernel_size
        self.fc = nn.Linear(channels, channels * kernel_size * kernel_size)  # = 1x1 conv on the pooled map
        self.norm = FilterNorm(channels, kernel_size) if filter_norm else nn.Identity()

    def forward(self, u: Tensor) -> Tensor:
        B, C = u.shape[:2]
        k = self.kernel_size
        theta = self.fc(u.mean(dim=(2, 3))).view(B, C, k * k)
        return self.norm(theta).view(B, C, k, k)


def dynamic_depthwise_conv(u: Tensor, kernels: Tensor) -> Tensor:
    """Per-sample depthwise convolution: ``u (B, C, h, w)`` with ``kernels (B, C, k, k)``, 'same' padding.

    Folds the batch into the channel axis so one grouped convolution applies every sample's own kernels.
    """
    B, C, h, w = u.shape
    k = kernels.shape[-1]
    out = F.conv2d(u.reshape(1, B * C, h, w), kernels.reshape(B * C, 1, k, k), padding=k // 2, groups=B * C)
    return out.view(B, C, h, w)


class DynamicAdapter(nn.Module):
    """``s · Up(iConv(act(Down(x))))`` on tokens ``(B, prefix + h·w, D)``; ``Up`` is zero-initialised."""

    def __init__(self, dim: int, bottleneck: int = 64, kernel_size: int = 3, activation: str = "gelu",
                 filter_norm: bool = True, scale: float = 0.1, learnable_scale: bool = False,
                 placement: str = "parallel", tracker: GridTracker | None = None) -> None:
        super().__init__()
        if kernel_size < 1 or kernel_size % 2 == 0:
            raise ValueError(f"kernel_size must be odd and positive, got {kernel_size}")
        if placement not in PLACEMENTS:
            raise ValueError(f"placement must be one of {PLACEMENTS}, got {placement!r}")
        self.placement = placement
        self.down = nn.Linear(dim, bottleneck)
        self.act = make_activation(activation)
        self.icon = ICoN(bottleneck, kernel_size, filter_norm)
        self.up = nn.Linear(bottleneck, dim)
        self.scale = AdapterScale(scale, learnable_scale)
        self.tracker = tracker
        nn.init.kaiming_uniform_(self.down.weight, a=math.sqrt(5))
        nn.init.zeros_(self.down.bias)
        nn.init.zeros_(self.up.weight)
        nn.init.zeros_(self.up.bias)

    def split(self, x: Tensor, grid: tuple[int, int] | None = None) -> tuple[Tensor, Tensor]:
        """Bottleneck features → (prefix tokens (B, p, r), patch map (B, r, h, w))."""
        grid = grid or (self.tracker.grid if self.tracker is not None else None)
        if grid is None:
            raise RuntimeError("DynamicAdapter needs the token grid: run it inside a backbone tuned by iConFormer")
        h, w = grid
        u = self.act(self.down(x))
        B, N, r = u.shape
        p = N - h * w
        if p < 0:
            raise ValueError(f"iConFormer: {N} tokens do not hold a {h}x{w} patch grid (token dropping is not supported)")
        return u[:, :p], u[:, p:].transpose(1, 2).reshape(B, r, h, w)

    def kernels(self, x: Tensor, grid: tuple[int, int] | None = None) -> Tensor:
        """The per-sample kernels ``(B, r, k, k)`` iCoN generates for tokens ``x``."""
        return self.icon(self.split(x, grid)[1])

    def forward(self, x: Tensor, grid: tuple[int, int] | None = None) -> Tensor:
        prefix, u = self.split(x, grid)
        theta = self.icon(u)
        v = dynamic_depthwise_conv(u, theta).flatten(2).transpose(1, 2)
        if prefix.shape[1]:
            c = theta.shape[-1] // 2
            prefix = prefix * theta[:, :, c, c].unsqueeze(1)  # a 1x1 map under zero padding: the centre tap
        return self.scale(self.up(torch.cat([prefix, v], dim=1)))


class iConFormer(AdapterTuner):  # noqa: N801 - the paper's spelling
    """Input-conditioned dynamic adapters in every block (see the module docstring for what is inferred).

    Args:
        bottleneck: adapter width r (64).
        kernel_size: k of the generated depthwise kernels (3).
        branches: ``[mlp]`` (default), ``[attn]`` or both.
        placement: ``parallel`` (default: adapter reads the branch input, AdaptFormer-style) or
            ``sequential`` (reads the branch output).
        activation: after the down-projection, ``gelu`` (default), ``relu`` or ``none``.
        filter_norm: DDFNet FilterNorm on the generated kernels (True).
        scale: output scale s (0.1); ``learnable_scale`` makes it a trainable scalar.
        layers: block indices (None = all).
        train_norms: also train the LayerNorms (off).
    """

    def __init__(self, bottleneck: int = 64, kernel_size: int = 3, branches: list[str] | None = None,
                 placement: str = "parallel", activation: str = "gelu", filter_norm: bool = True,
                 scale: float = 0.1, learnable_scale: bool = False, layers: list[int] | None = None,
                 train_norms: bool = False) -> None:
        super().__init__(branches if branches is not None else ["mlp"], placement, layers, train_norms)
        if kernel_size < 1 or kernel_size % 2 == 0:
            raise ValueError(f"kernel_size must be odd and positive, got {kernel_size}")
        self.bottleneck = bottleneck
        self.kernel_size = kernel_size
        self.activation = activation
        self.filter_norm = filter_norm
        self.scale = scale
        self.learnable_scale = learnable_scale

    def _modify(self, backbone: nn.Module) -> None:
        pe = getattr(backbone, "patch_embed", None)
        if pe is None:
            raise TypeError("iConFormer needs a backbone with a `patch_embed` (the vitlab ViT)")
        ps = pe.patch_size if isinstance(pe.patch_size, tuple) else (pe.patch_size, pe.patch_size)
        self._tracker = GridTracker(tuple(int(p) for p in ps))
        pe.register_forward_pre_hook(self._tracker)
        super()._modify(backbone)

    def make_adapter(self, dim: int, backbone: nn.Module) -> nn.Module:
        return DynamicAdapter(dim, self.bottleneck, self.kernel_size, self.activation, self.filter_norm,
                              self.scale, self.learnable_scale, self.placement, tracker=self._tracker)
