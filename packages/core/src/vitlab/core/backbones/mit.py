"""Mix Transformer (MiT, the SegFormer encoder; Xie et al., NeurIPS 2021), sizes B0-B5.

A four-stage hierarchical transformer: each stage starts with an *overlapping* patch embedding (a strided
convolution, 7x7/4 then 3x3/2), runs blocks of *efficient self-attention* (keys and values come from a
map spatially reduced by a strided ``sr x sr`` convolution + LayerNorm) and *Mix-FFN* (Linear -> 3x3
depthwise conv -> GELU -> Linear), and ends with a LayerNorm. Outputs are maps at strides 4, 8, 16, 32.

Sizes follow the official configurations (``NVlabs/SegFormer`` ``mix_transformer.py``, used unchanged by
DAFormer): patch 4, heads (1, 2, 5, 8), spatial reduction (8, 4, 2, 1), MLP ratio 4, qkv bias, block and
stage norms LayerNorm with eps 1e-6 (the patch-embedding and reduction norms keep PyTorch's 1e-5), drop
path linearly increasing over all blocks.

Weights: :func:`load_segformer_checkpoint` (or ``MiT(pretrained=path)``) loads SegFormer's ImageNet-1k
``mit_b*.pth`` files through a key map (``patch_embed{i}`` / ``block{i}.{j}`` / ``norm{i}`` ->
``stages.{i-1}.*``; ``mlp.dwconv.dwconv`` -> ``mlp.dwconv``; the classifier ``head.*`` is dropped).
Nothing is downloaded.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping, Sequence

import torch
import torch.nn.functional as F
from timm.layers import DropPath, trunc_normal_
from torch import nn

from vitlab.core.backbones.checkpoint import LoadResult, read_checkpoint, unwrap_state_dict
from vitlab.core.restore import skip_pretrained

__all__ = ["MIT_SIZES", "MiT", "convert_segformer_state_dict", "load_segformer_checkpoint"]

#: size -> (embed dims, depths); everything else is shared by all sizes.
MIT_SIZES: dict[str, tuple[tuple[int, ...], tuple[int, ...]]] = {
    "b0": ((32, 64, 160, 256), (2, 2, 2, 2)),
    "b1": ((64, 128, 320, 512), (2, 2, 2, 2)),
    "b2": ((64, 128, 320, 512), (3, 4, 6, 3)),
    "b3": ((64, 128, 320, 512), (3, 4, 18, 3)),
    "b4": ((64, 128, 320, 512), (3, 8, 27, 3)),
    "b5": ((64, 128, 320, 512), (3, 6, 40, 3)),
}
_NORM_EPS = 1e-6


class OverlapPatchEmbed(nn.Module):
    """Strided ``k x k`` convolution with padding ``k // 2`` (patches overlap), then LayerNorm."""

    compile_region = True  # a large share of a MiT's parameters: compiled with the blocks (vitlab.core.perf)

    def __init__(self, in_chans: int, dim: int, patch_size: int, stride: int) -> None:
        super().__init__()
        self.proj = nn.Conv2d(in_chans, dim, patch_size, stride=stride, padding=patch_size // 2)
        self.norm = nn.LayerNorm(dim)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, int, int]:
        x = self.proj(x)
        h, w = x.shape[-2:]
        return self.norm(x.flatten(2).transpose(1, 2)), h, w


class EfficientAttention(nn.Module):
    """Multi-head attention whose keys/values come from a map reduced ``sr`` times per side."""

    def __init__(self, dim: int, num_heads: int, sr_ratio: int, qkv_bias: bool = True,
                 attn_drop: float = 0.0, proj_drop: float = 0.0) -> None:
        super().__init__()
        if dim % num_heads:
            raise ValueError(f"EfficientAttention: dim {dim} is not divisible by num_heads {num_heads}")
        self.num_heads = num_heads
        self.q = nn.Linear(dim, dim, bias=qkv_bias)
        self.kv = nn.Linear(dim, 2 * dim, bias=qkv_bias)
        self.attn_drop = attn_drop
        self.proj = nn.Linear(dim, dim)
        self.proj_drop = nn.Dropout(proj_drop)
        self.sr_ratio = sr_ratio
        if sr_ratio > 1:
            self.sr = nn.Conv2d(dim, dim, sr_ratio, stride=sr_ratio)
            self.norm = nn.LayerNorm(dim)

    def forward(self, x: torch.Tensor, h: int, w: int) -> torch.Tensor:
        b, n, c = x.shape
        heads = self.num_heads
        q = self.q(x).reshape(b, n, heads, c // heads).transpose(1, 2)
        if self.sr_ratio > 1:
            r = self.sr(x.transpose(1, 2).reshape(b, c, h, w)).flatten(2).transpose(1, 2)
            r = self.norm(r)
        else:
            r = x
        k, v = self.kv(r).reshape(b, -1, 2, heads, c // heads).permute(2, 0, 3, 1, 4)
        out = F.scaled_dot_product_attention(q, k, v, dropout_p=self.attn_drop if self.training else 0.0)
        return self.proj_drop(self.proj(out.transpose(1, 2).reshape(b, n, c)))


class MixFFN(nn.Module):
    """Linear -> 3x3 depthwise conv (the implicit position code) -> GELU -> Linear."""

    def __init__(self, dim: int, hidden: int, drop: float = 0.0) -> None:
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.dwconv = nn.Conv2d(hidden, hidden, 3, padding=1, groups=hidden)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden, dim)
        self.drop = nn.Dropout(drop)

    def forward(self, x: torch.Tensor, h: int, w: int) -> torch.Tensor:
        x = self.fc1(x)
        b, n, c = x.shape
        x = self.dwconv(x.transpose(1, 2).reshape(b, c, h, w)).flatten(2).transpose(1, 2)
        x = self.drop(self.act(x))
        return self.drop(self.fc2(x))


class MiTBlock(nn.Module):
    """Pre-norm transformer block: efficient attention and Mix-FFN, each with drop path."""

    compile_region = True  # ``compile: true`` compiles each block (vitlab.core.perf.compile_regions)

    def __init__(self, dim: int, num_heads: int, sr_ratio: int, mlp_ratio: float = 4.0, qkv_bias: bool = True,
                 drop: float = 0.0, attn_drop: float = 0.0, drop_path: float = 0.0) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=_NORM_EPS)
        self.attn = EfficientAttention(dim, num_heads, sr_ratio, qkv_bias, attn_drop, drop)
        self.drop_path = DropPath(drop_path) if drop_path > 0 else nn.Identity()
        self.norm2 = nn.LayerNorm(dim, eps=_NORM_EPS)
        self.mlp = MixFFN(dim, int(dim * mlp_ratio), drop)

    def forward(self, x: torch.Tensor, h: int, w: int) -> torch.Tensor:
        x = x + self.drop_path(self.attn(self.norm1(x), h, w))
        return x + self.drop_path(self.mlp(self.norm2(x), h, w))


class MiTStage(nn.Module):
    def __init__(self, patch_embed: OverlapPatchEmbed, blocks: list[MiTBlock], dim: int) -> None:
        super().__init__()
        self.patch_embed = patch_embed
        self.blocks = nn.ModuleList(blocks)
        self.norm = nn.LayerNorm(dim, eps=_NORM_EPS)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x, h, w = self.patch_embed(x)
        for blk in self.blocks:
            x = blk(x, h, w)
        x = self.norm(x)
        return x.transpose(1, 2).reshape(x.shape[0], -1, h, w)


class MiT(nn.Module):
    """SegFormer's Mix Transformer encoder.

    Args:
        size: ``"b0"`` ... ``"b5"`` (:data:`MIT_SIZES`).
        pretrained: path to a SegFormer ImageNet checkpoint (``mit_b5.pth``) or a vitlab MiT state dict;
            ``None`` keeps the random (truncated-normal) initialisation.
        in_chans: input channels.
        drop_path_rate: stochastic depth at the last block (DAFormer: 0.1).
        drop_rate, attn_drop_rate: dropout after projections / on attention weights (0 in SegFormer).
        embed_dims, depths: override the size's widths/depths (small test models).
        num_heads, sr_ratios, mlp_ratio, qkv_bias: shared architecture constants.

    ``forward(x)`` returns the four stage maps ``[(B, C_i, H/s_i, W/s_i)]`` with ``s = (4, 8, 16, 32)``;
    ``out_channels`` lists ``C_i``.
    """

    reductions = (4, 8, 16, 32)

    def __init__(self, size: str = "b0", pretrained: str | None = None, in_chans: int = 3,
                 drop_path_rate: float = 0.1, drop_rate: float = 0.0, attn_drop_rate: float = 0.0,
                 embed_dims: Sequence[int] | None = None, depths: Sequence[int] | None = None,
                 num_heads: Sequence[int] = (1, 2, 5, 8), sr_ratios: Sequence[int] = (8, 4, 2, 1),
                 mlp_ratio: float = 4.0, qkv_bias: bool = True) -> None:
        super().__init__()
        if size not in MIT_SIZES:
            raise ValueError(f"MiT: size must be one of {sorted(MIT_SIZES)}, got {size!r}")
        dims = tuple(int(d) for d in (embed_dims or MIT_SIZES[size][0]))
        depths = tuple(int(d) for d in (depths or MIT_SIZES[size][1]))
        if not (len(dims) == len(depths) == len(num_heads) == len(sr_ratios) == 4):
            raise ValueError("MiT: embed_dims, depths, num_heads and sr_ratios need 4 entries each")
        self.size = size
        self.embed_dims = dims
        self.depths = depths
        self.out_channels = list(dims)
        dpr = torch.linspace(0, drop_path_rate, sum(depths)).tolist()
        stages, k, prev = [], 0, in_chans
        for i in range(4):
            embed = OverlapPatchEmbed(prev, dims[i], 7 if i == 0 else 3, 4 if i == 0 else 2)
            blocks = [MiTBlock(dims[i], num_heads[i], sr_ratios[i], mlp_ratio, qkv_bias, drop_rate, attn_drop_rate,
                               dpr[k + j]) for j in range(depths[i])]
            stages.append(MiTStage(embed, blocks, dims[i]))
            k += depths[i]
            prev = dims[i]
        self.stages = nn.ModuleList(stages)
        self.apply(self._init_weights)
        if pretrained and not skip_pretrained(str(pretrained)):
            load_segformer_checkpoint(self, pretrained, strict=True)

    @staticmethod
    def _init_weights(m: nn.Module) -> None:
        if isinstance(m, nn.Linear):
            trunc_normal_(m.weight, std=0.02)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.LayerNorm):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)
        elif isinstance(m, nn.Conv2d):
            fan_out = m.kernel_size[0] * m.kernel_size[1] * m.out_channels // m.groups
            nn.init.normal_(m.weight, 0.0, (2.0 / fan_out) ** 0.5)
            if m.bias is not None:
                nn.init.zeros_(m.bias)

    def forward_intermediates(self, x: torch.Tensor) -> list[torch.Tensor]:
        outs = []
        for stage in self.stages:
            x = stage(x)
            outs.append(x)
        return outs

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        return self.forward_intermediates(x)


_SEGFORMER_KEY = [
    (re.compile(r"^patch_embed(\d)\.(.*)$"), lambda m: f"stages.{int(m[1]) - 1}.patch_embed.{m[2]}"),
    (re.compile(r"^block(\d)\.(\d+)\.(.*)$"), lambda m: f"stages.{int(m[1]) - 1}.blocks.{m[2]}.{m[3]}"),
    (re.compile(r"^norm(\d)\.(.*)$"), lambda m: f"stages.{int(m[1]) - 1}.norm.{m[2]}"),
]


def convert_segformer_state_dict(state: Mapping[str, torch.Tensor]) -> tuple[dict[str, torch.Tensor], list[str]]:
    """SegFormer / mmseg ``MixVisionTransformer`` keys -> :class:`MiT` keys; returns ``(state, dropped)``.

    A leading ``backbone.`` or ``module.`` is stripped; ``head.*`` (the ImageNet classifier) is dropped;
    keys already in vitlab's layout pass through.
    """
    out, dropped = {}, []
    for key, value in state.items():
        k = re.sub(r"^(module\.)?(backbone\.)?", "", key)
        if k.startswith("head.") or k.startswith("decode_head."):
            dropped.append(key)
            continue
        k = k.replace("mlp.dwconv.dwconv.", "mlp.dwconv.")
        for pattern, repl in _SEGFORMER_KEY:
            m = pattern.match(k)
            if m:
                k = repl(m)
                break
        out[k] = value
    return out, dropped


def load_segformer_checkpoint(model: MiT, path_or_state: str | os.PathLike | Mapping, strict: bool = True) -> LoadResult:
    """Load SegFormer ImageNet weights (``mit_b*.pth``) into ``model``; shapes must match the size.

    With ``strict`` every encoder weight must be present and no unknown key may remain (an error names
    them and the file).
    """
    if isinstance(path_or_state, Mapping):
        source, obj = "<state dict>", path_or_state
    else:
        source = os.fspath(path_or_state)
        obj = read_checkpoint(source)
    state, _ = convert_segformer_state_dict(unwrap_state_dict(obj, source=source))
    own = model.state_dict()
    bad = [f"{k}: {tuple(v.shape)} vs {tuple(own[k].shape)}" for k, v in state.items()
           if k in own and own[k].shape != v.shape]
    if bad:
        raise ValueError(f"{source}: weights do not fit MiT-{model.size} (checkpoint vs model): {bad[:5]}")
    result = model.load_state_dict(state, strict=False)
    missing, unexpected = list(result.missing_keys), list(result.unexpected_keys)
    if strict and (missing or unexpected):
        raise ValueError(f"{source}: not a SegFormer MiT-{model.size} checkpoint; missing {missing[:5]}, "
                         f"unexpected {unexpected[:5]}")
    return LoadResult(missing, unexpected)
