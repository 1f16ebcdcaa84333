"""Swin Transformer backbone for dense multi-task prediction, on timm's Swin implementation.

Built from timm's ``SwinTransformer`` (Wightman, `huggingface/pytorch-image-models`, itself after Liu et al.,
"Swin Transformer", ICCV 2021, `microsoft/Swin-Transformer`): its patch embedding, window attention
modules, MLPs, relative-position tables and PatchMerging layers, with timm's parameter names, so timm
weights load as they are and the official ``swin_tiny_patch4_window7_224.pth`` loads through timm's key map
(official checkpoints merge patches at the *end* of a stage, timm at the start of the next one).

What this module adds is the forward pass, written so that multi-task methods can reach inside a block:

* **Per-stage outputs after PatchMerging** (:meth:`Swin.forward_stages`), as MTLoRA/TADFormer
  (`scale-lab/MTLoRA`) feed their decoders: Swin-T at 448 px gives [192, 384, 768, 768] channels at strides
  8, 16, 32, 32 (the last stage has no merging). The classifier norm/head are removed.
* **Window helpers** (:meth:`Swin.partition` / :meth:`Swin.unpartition`): cyclic shift, padding to whole
  windows, window split and the shift mask, cached per feature size.
* **Prefix tokens inside window attention** (:func:`window_attention`): ``P`` extra tokens are prepended to
  every window; the relative-position bias and the shift mask apply only to the patch-patch block, and the
  raw (pre-scale, pre-bias, pre-softmax) prompt→patch logits ``q_p k_xᵀ`` can be returned.
  :func:`average_over_windows` averages per-window prompt outputs (TADFormer's prompt update).
* **Core task modules**: ``forward_intermediates`` and ``head_in_dim``/``head_stride`` let
  :class:`vitlab.core.SemanticSegmentation` / :class:`~vitlab.core.DepthEstimation` use Swin with the ``linear``
  or ``pup`` head (DPT expects equal-width maps at one stride and is not supported).
* **Replaceable linears**: the block forward calls ``attn.qkv``, ``attn.proj``, ``mlp.fc1`` and ``mlp.fc2``
  as modules, and :attr:`Swin.blocks` lists every block, so ``vitlab.peft`` tuners (LoRA ...) replace them.

``img_size`` fixes what timm fixes at build time: windows larger than a stage's feature map shrink to it
(and the shift is dropped), exactly like timm/official Swin. Other input sizes are padded to whole windows.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence

import timm
import torch
import torch.nn.functional as F
from timm.models.swin_transformer import checkpoint_filter_fn, window_partition, window_reverse
from torch import Tensor, nn

__all__ = ["SWIN_SIZES", "Swin", "average_over_windows", "window_attention"]

_log = logging.getLogger(__name__)

#: name -> (timm model, embed_dim, depths, num_heads)
SWIN_SIZES: dict[str, tuple[str, int, tuple[int, ...], tuple[int, ...]]] = {
    "tiny": ("swin_tiny_patch4_window7_224", 96, (2, 2, 6, 2), (3, 6, 12, 24)),
    "small": ("swin_small_patch4_window7_224", 96, (2, 2, 18, 2), (3, 6, 12, 24)),
    "base": ("swin_base_patch4_window7_224", 128, (2, 2, 18, 2), (4, 8, 16, 32)),
}


def window_attention(attn: nn.Module, x: Tensor, mask: Tensor | None, prefix: Tensor | None = None,
                     qkv: nn.Module | None = None, return_logits: bool = False,
                     ) -> tuple[Tensor, Tensor | None, Tensor | None]:
    """Multi-head window attention of a timm ``WindowAttention`` up to (not including) its output projection.

    Args:
        attn: the block's ``WindowAttention`` (``num_heads``, ``scale``, relative-position table).
        x: window tokens (B·nW, N, C), windows ordered as ``window_partition`` makes them.
        mask: shift mask (nW, N, N) with 0 / -100 entries, or None.
        prefix: P extra tokens per window (B·nW, P, C), already normalised; they attend to and are attended
            by every patch of their window; bias and mask only touch the patch-patch block.
        qkv: module to use instead of ``attn.qkv``.
        return_logits: also return the raw prefix→patch logits ``q k^T`` (B·nW, heads, P, N), before the
            scale, the bias and the softmax.

    Returns ``(z, z_prefix, logits)``: the attention output (proj input) of the patches (B·nW, N, C), of the
    prefix tokens (B·nW, P, C) or None, and the logits or None.
    """
    qkv = attn.qkv if qkv is None else qkv
    B_, N, C = x.shape
    P = 0 if prefix is None else prefix.shape[1]
    tokens = x if prefix is None else torch.cat([prefix, x], dim=1)
    L = P + N
    h = attn.num_heads
    q, k, v = qkv(tokens).reshape(B_, L, 3, h, -1).permute(2, 0, 3, 1, 4).unbind(0)
    bias = attn._get_rel_pos_bias()  # (1, h, N, N)
    if mask is not None:
        nW = mask.shape[0]
        bias = (bias.unsqueeze(1) + mask.view(1, nW, 1, N, N)).expand(B_ // nW, -1, -1, -1, -1).reshape(B_, h, N, N)
    if P:
        bias = F.pad(bias, (P, 0, P, 0))  # zero bias on every prompt row/column
    logits = None
    if return_logits:
        raw = q @ k.transpose(-2, -1)
        logits = raw[:, :, :P, P:]
        a = torch.softmax(raw * attn.scale + bias.to(raw.dtype), dim=-1)
        a = attn.attn_drop(a)
        out = a @ v
    else:
        drop = attn.attn_drop.p if attn.training else 0.0
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=bias.to(q.dtype), dropout_p=drop)
    z = out.transpose(1, 2).reshape(B_, L, -1)
    return z[:, P:], (z[:, :P] if P else None), logits


def average_over_windows(tokens: Tensor, batch: int) -> Tensor:
    """(B·nW, P, C) per-window prefix outputs → (B, P, C), the mean over each image's windows."""
    return tokens.view(batch, -1, *tokens.shape[1:]).mean(1)


class _Partition:
    """What :meth:`Swin.unpartition` needs to put windows back: sizes, padding and shift."""

    __slots__ = ("B", "H", "W", "Hp", "Wp", "window", "shift")

    def __init__(self, B, H, W, Hp, Wp, window, shift) -> None:
        self.B, self.H, self.W, self.Hp, self.Wp, self.window, self.shift = B, H, W, Hp, Wp, window, shift

    @property
    def num_windows(self) -> int:
        return (self.Hp // self.window[0]) * (self.Wp // self.window[1])


class Swin(nn.Module):
    """Swin Transformer (timm) with per-stage dense outputs and hooks for multi-task PEFT methods.

    Args:
        size: ``tiny`` (Swin-T: C=96, depths [2,2,6,2], heads [3,6,12,24]), ``small`` or ``base``.
        img_size: training input size (448 for MTLoRA/TADFormer); decides window clamping as in timm.
        window_size: attention window (7).
        drop_path_rate: stochastic depth, linearly increasing over blocks (0.2 in MTLoRA).
        pretrained: ``True`` loads timm's ImageNet-1k weights (online), a path loads a local timm or official
            Swin checkpoint (``swin_tiny_patch4_window7_224.pth``, keys mapped by timm's filter); ``False`` or
            ``None`` (``null``, as for the ViT) is a random initialisation.
        embed_dim, depths, num_heads: override the size (small test models).

    Attributes: ``dims`` (stage widths), ``out_channels`` (channels of :meth:`forward_stages`), ``strides``.
    """

    #: ``compile: true`` compiles the whole encoder as one region (vitlab.core.perf.compile_regions): its blocks
    #: run through :meth:`block_forward`, not as module calls, so a per-block region would never be entered
    compile_region = True

    def __init__(self, size: str = "tiny", img_size: int | tuple[int, int] = 448, window_size: int = 7,
                 drop_path_rate: float = 0.2, pretrained: bool | str | None = False, embed_dim: int | None = None,
                 depths: Sequence[int] | None = None, num_heads: Sequence[int] | None = None) -> None:
        super().__init__()
        if isinstance(pretrained, str) and pretrained.strip().lower() in ("", "none", "null"):
            pretrained = None  # `--...pretrained None` reaches here as the string 'None'; it means no weights
        if size not in SWIN_SIZES:
            raise ValueError(f"Swin: size must be one of {sorted(SWIN_SIZES)}, got {size!r}")
        name, c0, d, h = SWIN_SIZES[size]
        embed_dim = int(embed_dim or c0)
        depths = tuple(int(v) for v in (depths or d))
        num_heads = tuple(int(v) for v in (num_heads or h))
        if len(depths) != 4 or len(num_heads) != 4:
            raise ValueError(f"Swin: depths and num_heads need 4 stages, got {depths} and {num_heads}")
        model = timm.create_model(
            name, pretrained=pretrained is True, img_size=img_size, window_size=window_size, num_classes=0,
            drop_path_rate=drop_path_rate, embed_dim=embed_dim, depths=depths, num_heads=num_heads)
        model.patch_embed.strict_img_size = False
        self.patch_embed = model.patch_embed
        self.layers = model.layers  # timm layout: layers[s].downsample merges *before* stage s
        self.embed_dim = embed_dim
        self.depths = depths
        self.num_heads = num_heads
        self.dims = [embed_dim * 2 ** s for s in range(4)]
        self.out_channels = [*self.dims[1:], self.dims[-1]]
        self.strides = [8, 16, 32, 32]
        self.patch_size = 4
        # what core's dense task heads ("linear", "pup") read: the last map's width and stride
        self.head_in_dim = self.out_channels[-1]
        self.head_stride = 32
        self._masks: dict = {}
        if isinstance(pretrained, (str, os.PathLike)) and pretrained:
            self.load_pretrained(pretrained)

    # -- structure ---------------------------------------------------------------------------------
    @property
    def blocks(self) -> nn.ModuleList:
        """Every block, stage by stage (a view; the modules are registered under ``layers``)."""
        return nn.ModuleList([b for layer in self.layers for b in layer.blocks])

    def stage_blocks(self, s: int) -> nn.Sequential:
        return self.layers[s].blocks

    def merging(self, s: int) -> nn.Module | None:
        """The PatchMerging applied after stage ``s`` (None after the last stage)."""
        return self.layers[s + 1].downsample if s < 3 else None

    def merge(self, s: int, x: Tensor) -> Tensor:
        m = self.merging(s)
        return x if m is None else m(x)

    def load_pretrained(self, path: str | os.PathLike) -> None:
        """Load a local timm or official Swin checkpoint; reports keys that did not match."""
        if not os.path.isfile(path):
            raise FileNotFoundError(f"Swin: pretrained checkpoint {path!r} does not exist")
        state = torch.load(path, map_location="cpu", weights_only=True)
        if not isinstance(state, dict):
            raise ValueError(f"Swin: {path!r} does not hold a state dict")

        class _Probe(nn.Module):  # what timm's filter inspects: patch_embed and the blocks by name
            pass

        probe = _Probe()
        probe.patch_embed, probe.layers = self.patch_embed, self.layers
        state = checkpoint_filter_fn(state, probe)
        state = {k: v for k, v in state.items() if not k.startswith(("head", "norm."))}
        missing, unexpected = self.load_state_dict(state, strict=False)
        if unexpected:
            raise ValueError(f"Swin: {path!r} has keys this model does not: {unexpected[:8]}")
        if missing:
            _log.warning("Swin: %s lacks %d keys, e.g. %s", path, len(missing), missing[:4])

    # -- window helpers ----------------------------------------------------------------------------
    def _shift_mask(self, Hp: int, Wp: int, window: tuple[int, int], shift: tuple[int, int],
                    device: torch.device) -> Tensor:
        key = (Hp, Wp, window, shift, str(device))
        compiling = torch.compiler.is_compiling()  # traced: built in the graph (constant-folded), no host cache
        mask = None if compiling else self._masks.get(key)
        if mask is None:
            img = torch.zeros(1, Hp, Wp, 1)
            cnt = 0
            for hs in (slice(0, -window[0]), slice(-window[0], -shift[0]), slice(-shift[0], None)):
                for ws in (slice(0, -window[1]), slice(-window[1], -shift[1]), slice(-shift[1], None)):
                    img[:, hs, ws, :] = cnt
                    cnt += 1
            mw = window_partition(img, window).view(-1, window[0] * window[1])
            diff = mw.unsqueeze(1) - mw.unsqueeze(2)
            mask = torch.zeros_like(diff).masked_fill(diff != 0, -100.0).to(device)
            if not compiling:
                self._masks[key] = mask
        return mask

    def partition(self, blk: nn.Module, x: Tensor) -> tuple[Tensor, Tensor | None, _Partition]:
        """(B, H, W, C) → window tokens (B·nW, w², C), the shift mask and the bookkeeping to undo it."""
        B, H, W, C = x.shape
        window, shift = tuple(blk.window_size), tuple(blk.shift_size)
        if any(shift):
            x = torch.roll(x, shifts=(-shift[0], -shift[1]), dims=(1, 2))
        pad_h = (window[0] - H % window[0]) % window[0]
        pad_w = (window[1] - W % window[1]) % window[1]
        if pad_h or pad_w:
            x = F.pad(x, (0, 0, 0, pad_w, 0, pad_h))
        Hp, Wp = H + pad_h, W + pad_w
        tokens = window_partition(x, window).view(-1, window[0] * window[1], C)
        mask = self._shift_mask(Hp, Wp, window, shift, x.device) if any(shift) else None
        return tokens, mask, _Partition(B, H, W, Hp, Wp, window, shift)

    @staticmethod
    def unpartition(tokens: Tensor, part: _Partition) -> Tensor:
        """Inverse of :meth:`partition` for any channel count: (B·nW, w², C') → (B, H, W, C')."""
        C = tokens.shape[-1]
        x = window_reverse(tokens.view(-1, part.window[0], part.window[1], C), part.window, part.Hp, part.Wp)
        x = x[:, :part.H, :part.W]
        if any(part.shift):
            x = torch.roll(x, shifts=part.shift, dims=(1, 2))
        return x

    # -- forward -----------------------------------------------------------------------------------
    def block_forward(self, blk: nn.Module, x: Tensor, prefix: Tensor | None = None,
                      ) -> tuple[Tensor, Tensor | None]:
        """One Swin block on (B, H, W, C); with ``prefix`` (B, P, C) the prompts ride along in every window
        and come back as ``LN1``-normalised window-averaged attention outputs after ``proj`` (no residual)."""
        B = x.shape[0]
        tokens, mask, part = self.partition(blk, blk.norm1(x))
        pre = None
        if prefix is not None:
            pre = blk.norm1(prefix).repeat_interleave(part.num_windows, dim=0)
        z, zp, _ = window_attention(blk.attn, tokens, mask, prefix=pre)
        x = x + blk.drop_path1(self.unpartition(blk.attn.proj(z), part))
        x = x + blk.drop_path2(blk.mlp(blk.norm2(x)))
        p_out = average_over_windows(blk.attn.proj(zp), B) if zp is not None else None
        return x, p_out

    def forward_stages(self, image: Tensor) -> list[Tensor]:
        """Per-stage outputs after PatchMerging, (B, C_s, H/stride, W/stride) for stride 8, 16, 32, 32.

        A module call (:meth:`forward`), so a compiled encoder runs compiled from every entry point."""
        return self(image)

    def forward_intermediates(self, image: Tensor) -> list[Tensor]:
        """The stage maps, for core's dense task modules (``SemanticSegmentation(backbone=Swin(), head="linear")``)."""
        return self(image)

    def forward(self, image: Tensor) -> list[Tensor]:
        x = self.patch_embed(image)
        outs = []
        for s in range(4):
            for blk in self.stage_blocks(s):
                x, _ = self.block_forward(blk, x)
            x = self.merge(s, x)
            outs.append(x.permute(0, 3, 1, 2))
        return outs
