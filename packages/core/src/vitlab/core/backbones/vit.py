"""Plain Vision Transformer backbone for dense prediction and masked image modelling.

Written in the style of timm's ``vision_transformer.py`` (Wightman, `huggingface/pytorch-image-models`)
and built from its blocks (``PatchEmbed``, ``Block``, ``Mlp``, ``DropPath``, fused SDPA attention).
Additions for this repo:

* MAE-style token dropping (``ids_keep``; He et al., "Masked Autoencoders Are Scalable Vision Learners",
  `facebookresearch/mae` ``models_mae.py``) and SimMIM-style mask-token replacement (``mask``; Xie et al.,
  "SimMIM", `microsoft/SimMIM`);
* fixed 2-D sin-cos, learned, or CroCo v2 RoPE2D positions (`naver/croco`), for any input size that is a
  multiple of the patch size;
* multi-level outputs (``forward_intermediates``) for DPT / SETR heads, and layer ids for layer-wise
  lr decay (MAE ``util/lr_decay.py`` convention).
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Iterable, Sequence
from functools import partial

import torch
import torch.nn as nn
from timm.layers import PatchEmbed, trunc_normal_
from timm.models.vision_transformer import Block
from torch.utils.checkpoint import checkpoint

from vitlab.core.restore import skip_pretrained

from .pos_embed import get_2d_sincos_pos_embed, resize_pos_embed
from .rope import RoPE2D, RoPEAttention

__all__ = ["ViT", "VIT_SIZES", "RoPEBlock", "default_out_indices", "init_mae_weights", "run_block"]

_log = logging.getLogger(__name__)

#: name -> (embed_dim, depth, num_heads)
VIT_SIZES: dict[str, tuple[int, int, int]] = {
    "tiny": (192, 12, 3),
    "small": (384, 12, 6),
    "base": (768, 12, 12),
    "large": (1024, 24, 16),
    "huge": (1280, 32, 16),
}

POS_EMBED_TYPES = ("sincos", "learned", "rope", "none")
_CKPT_EXTS = (".pth", ".pt", ".bin", ".safetensors", ".ckpt")


def default_out_indices(depth: int, n: int = 4) -> list[int]:
    """``n`` evenly spaced block indices ending at the last block (depth 12 -> [2, 5, 8, 11], 24 -> [5, 11, 17, 23])."""
    return [max(math.ceil(depth * (k + 1) / n) - 1, 0) for k in range(n)]


def run_block(blk: nn.Module, x: torch.Tensor, pos: torch.Tensor | None = None,
              attn_mask: torch.Tensor | None = None, checkpointing: bool = False) -> torch.Tensor:
    """One transformer block: ``blk(x)``, ``blk(x, pos)`` (RoPE) or ``blk(x, attn_mask=...)`` (a timm ``Block``;
    ``attn_mask`` broadcastable to ``(B, heads, N, N)``).

    ``checkpointing``: recompute the block in backward (``torch.utils.checkpoint``, non-reentrant) when
    gradients are on.
    """
    if checkpointing and torch.is_grad_enabled() and not torch.jit.is_scripting():
        return checkpoint(run_block, blk, x, pos, attn_mask, use_reentrant=False)
    if pos is not None:
        if attn_mask is not None:
            raise ValueError("attention masks are not supported with RoPE blocks: use pos_embed sincos/learned")
        return blk(x, pos)
    if attn_mask is None:
        return blk(x)
    return blk(x, attn_mask=attn_mask)


class RoPEBlock(Block):
    """timm ``Block`` whose attention is :class:`RoPEAttention`; ``forward(x, pos)``.

    Same parameter names as timm's block (``norm1, attn.qkv, attn.proj, ls1, norm2, mlp.fc1, mlp.fc2, ls2``).
    """

    def __init__(
        self,
        dim: int,
        num_heads: int,
        mlp_ratio: float = 4.0,
        qkv_bias: bool = True,
        init_values: float | None = None,
        drop_path: float = 0.0,
        norm_layer=nn.LayerNorm,
        rope: RoPE2D | None = None,
    ) -> None:
        super().__init__(
            dim=dim,
            num_heads=num_heads,
            mlp_ratio=mlp_ratio,
            qkv_bias=qkv_bias,
            init_values=init_values,
            drop_path=drop_path,
            norm_layer=norm_layer,
        )
        self.attn = RoPEAttention(dim, num_heads, qkv_bias=qkv_bias, rope=rope)

    def forward(self, x: torch.Tensor, pos: torch.Tensor | None = None) -> torch.Tensor:  # type: ignore[override]
        x = x + self.drop_path1(self.ls1(self.attn(self.norm1(x), pos=pos)))
        x = x + self.drop_path2(self.ls2(self.mlp(self.norm2(x))))
        return x


class ViT(nn.Module):
    """Vision Transformer backbone (patch embedding, pre-norm blocks, final LayerNorm; no classifier).

    Args:
        size: preset setting ``embed_dim/depth/num_heads``: ``tiny`` 192/12/3, ``small`` 384/12/6,
            ``base`` 768/12/12, ``large`` 1024/24/16, ``huge`` 1280/32/16. Default ``"small"``.
        embed_dim, depth, num_heads: override the preset when given (default ``None``).
        patch_size: square patch size (16; 8 and 14 work too).
        img_size: int or (h, w); only sets the default grid of the position table (224). Any input whose
            sides are multiples of ``patch_size`` is accepted: a learned table is resized (bicubic, timm's
            ``resample_abs_pos_embed``), the sin-cos table is recomputed for the actual grid.
        in_chans: input channels (3).
        mlp_ratio: MLP hidden width / embed_dim (4.0).
        qkv_bias: bias on the qkv projection (True).
        pos_embed: ``"sincos"`` (default; fixed MAE 2-D sin-cos, a non-persistent, non-trainable buffer),
            ``"learned"`` (trainable, timm layout ``(1, prefix + h*w, D)``, trunc-normal 0.02), ``"rope"``
            (CroCo v2 RoPE2D on q/k in every block, no additive embedding; prefix tokens are not rotated)
            or ``"none"``.
        rope_base: RoPE2D frequency base (100.0, CroCo's RoPE100).
        class_token: prepend a learned class token (True).
        mask_token: create a learned SimMIM mask token, N(0, 0.02) (False).
        drop_path_rate: stochastic depth, linearly increasing over blocks (0.0).
        layer_scale_init: LayerScale init value, ``None`` = no LayerScale.
        out_indices: blocks whose outputs ``forward_intermediates`` returns by default; ``None`` = 4 evenly
            spaced ending at the last block (depth 12 -> [2, 5, 8, 11]). Negative indices count from the end.
        global_pool: ``forward`` pooling, ``"token"`` (class token; falls back to the mean of patch tokens
            without class token) or ``"avg"`` (mean of patch tokens after the final norm).
        grad_checkpointing: recompute each block in backward (``torch.utils.checkpoint``) (False).
        pretrained: ``None``; a local checkpoint path (.pth/.pt/.bin/.ckpt/.safetensors) or a timm model
            name (``timm.create_model(name, pretrained=True)``; needs network access / the HF cache).
        checkpoint_format: ``"auto"``, ``"vitlab"``, ``"timm"``, ``"mae"`` (facebookresearch/mae names) or
            ``"croco"`` (naver/croco encoder), see :func:`vitlab.core.backbones.load_checkpoint`.
        checkpoint_key: sub-dict of the checkpoint holding the weights (e.g. ``"model"``); ``None`` unwraps
            ``state_dict`` / ``model`` / ``module`` automatically.
        freeze: set ``requires_grad=False`` on all parameters after loading (False).

    Initialisation follows MAE: xavier-uniform Linear weights with zero bias, xavier-uniform on the 2-D view
    of the patch-embedding weight, LayerNorm (1, 0), class / mask tokens N(0, 0.02). LayerNorm eps 1e-6.

    Token layout: ``[prefix tokens (class token if any) ; patch tokens in raster order]``.
    """

    def __init__(
        self,
        size: str = "small",
        embed_dim: int | None = None,
        depth: int | None = None,
        num_heads: int | None = None,
        patch_size: int = 16,
        img_size: int | tuple[int, int] = 224,
        in_chans: int = 3,
        mlp_ratio: float = 4.0,
        qkv_bias: bool = True,
        pos_embed: str = "sincos",
        rope_base: float = 100.0,
        class_token: bool = True,
        mask_token: bool = False,
        drop_path_rate: float = 0.0,
        layer_scale_init: float | None = None,
        out_indices: list[int] | None = None,
        global_pool: str = "token",
        grad_checkpointing: bool = False,
        pretrained: str | None = None,
        checkpoint_format: str = "auto",
        checkpoint_key: str | None = None,
        freeze: bool = False,
    ) -> None:
        super().__init__()
        if size not in VIT_SIZES:
            raise ValueError(f"unknown ViT size {size!r}; choose one of {sorted(VIT_SIZES)}")
        if pos_embed not in POS_EMBED_TYPES:
            raise ValueError(f"unknown pos_embed {pos_embed!r}; choose one of {POS_EMBED_TYPES}")
        if global_pool not in ("token", "avg"):
            raise ValueError(f"global_pool must be 'token' or 'avg', got {global_pool!r}")
        d0, depth0, heads0 = VIT_SIZES[size]
        self.size = size
        self.embed_dim = int(embed_dim or d0)
        self.depth = int(depth or depth0)
        self.num_heads = int(num_heads or heads0)
        if self.embed_dim % self.num_heads:
            raise ValueError(f"embed_dim {self.embed_dim} not divisible by num_heads {self.num_heads}")
        self.patch_size = int(patch_size)
        self.in_chans = int(in_chans)
        self.pos_embed_type = pos_embed
        self.num_prefix_tokens = 1 if class_token else 0
        self.global_pool = global_pool
        self.grad_checkpointing = bool(grad_checkpointing)
        D = self.embed_dim
        if isinstance(img_size, (list, tuple)):
            img_size = (int(img_size[0]), int(img_size[1]))

        self.patch_embed = PatchEmbed(
            img_size=img_size,
            patch_size=self.patch_size,
            in_chans=self.in_chans,
            embed_dim=D,
            strict_img_size=False,
        )
        self.grid_size: tuple[int, int] = tuple(int(g) for g in self.patch_embed.grid_size)  # type: ignore[assignment]
        num_patches = self.grid_size[0] * self.grid_size[1]

        self.cls_token = nn.Parameter(torch.zeros(1, 1, D)) if class_token else None
        self.mask_token = nn.Parameter(torch.zeros(1, 1, D)) if mask_token else None
        if pos_embed == "learned":
            self.pos_embed = nn.Parameter(torch.zeros(1, self.num_prefix_tokens + num_patches, D))
        elif pos_embed == "sincos":
            table = get_2d_sincos_pos_embed(D, self.grid_size, num_prefix_tokens=self.num_prefix_tokens)
            self.register_buffer("pos_embed", table[None], persistent=False)
        else:
            self.pos_embed = None
        self.rope = RoPE2D(base=rope_base) if pos_embed == "rope" else None

        norm_layer = partial(nn.LayerNorm, eps=1e-6)
        dpr = [drop_path_rate * i / max(self.depth - 1, 1) for i in range(self.depth)]
        if self.rope is not None:
            blocks = [
                RoPEBlock(
                    D,
                    self.num_heads,
                    mlp_ratio,
                    qkv_bias,
                    layer_scale_init,
                    dpr[i],
                    norm_layer,
                    rope=self.rope,
                )
                for i in range(self.depth)
            ]
        else:
            blocks = [
                Block(
                    dim=D,
                    num_heads=self.num_heads,
                    mlp_ratio=mlp_ratio,
                    qkv_bias=qkv_bias,
                    init_values=layer_scale_init,
                    drop_path=dpr[i],
                    norm_layer=norm_layer,
                )
                for i in range(self.depth)
            ]
        self.blocks = nn.ModuleList(blocks)
        self.norm = norm_layer(D)
        self.out_indices = self._normalize_indices(
            out_indices if out_indices is not None else default_out_indices(self.depth)
        )

        self._sincos_cache: dict[tuple, torch.Tensor] = {}
        self._grid_pos_cache: dict[tuple, torch.Tensor] = {}
        self.init_weights()

        self.pretrained_source = pretrained  # what the weights came from (None: random initialisation)
        if pretrained and not skip_pretrained(pretrained):
            self.load_pretrained(
                pretrained, checkpoint_format=checkpoint_format, checkpoint_key=checkpoint_key
            )
        self.frozen = False
        if freeze:
            self.freeze_()

    # ------------------------------------------------------------------ init / loading
    def init_weights(self) -> None:
        """MAE initialisation (see class docstring)."""
        if self.pos_embed_type == "learned":
            trunc_normal_(self.pos_embed, std=0.02)
        w = self.patch_embed.proj.weight.data
        nn.init.xavier_uniform_(w.view(w.shape[0], -1))
        if self.cls_token is not None:
            nn.init.normal_(self.cls_token, std=0.02)
        if self.mask_token is not None:
            nn.init.normal_(self.mask_token, std=0.02)
        self.apply(init_mae_weights)

    def load_pretrained(
        self, pretrained: str, checkpoint_format: str = "auto", checkpoint_key: str | None = None
    ):
        """Load a local checkpoint file or timm weights by model name (see ``pretrained`` in the class doc)."""
        from .checkpoint import load_checkpoint

        is_path = os.path.exists(pretrained) or pretrained.endswith(_CKPT_EXTS)
        if is_path:
            result = load_checkpoint(
                self, pretrained, format=checkpoint_format, key=checkpoint_key, strict=False
            )
        else:
            import timm

            src = timm.create_model(pretrained, pretrained=True, num_classes=0)
            result = load_checkpoint(self, src.state_dict(), format="timm", strict=False)
        if result.missing:
            _log.warning("ViT: keys missing from %s: %s", pretrained, result.missing)
        if result.unexpected:
            _log.warning("ViT: unused keys in %s: %s", pretrained, result.unexpected)
        return result

    # ------------------------------------------------------------------ freezing / optimiser helpers
    def freeze_(self, flag: bool = True) -> ViT:
        """Set ``requires_grad = not flag`` on every parameter (the sin-cos table is a buffer); returns self."""
        for p in self.parameters():
            p.requires_grad_(not flag)
        self.frozen = flag
        return self

    def unfreeze_(self) -> ViT:
        return self.freeze_(False)

    def set_grad_checkpointing(self, enable: bool = True) -> None:
        self.grad_checkpointing = enable

    @property
    def num_layer_ids(self) -> int:
        """Number of distinct :meth:`layer_id` values: ``depth + 2``."""
        return self.depth + 2

    def layer_id(self, name: str) -> int:
        """Layer id of a parameter name for layer-wise lr decay (MAE ``get_layer_id_for_vit``).

        0 for ``patch_embed``, ``cls_token``, ``pos_embed``, ``mask_token``; ``i + 1`` for ``blocks.i.*``;
        ``depth + 1`` for everything else (final ``norm``, heads). Names are relative to this module; a
        leading prefix such as ``backbone.`` is tolerated.
        """
        parts = name.split(".")
        for k, part in enumerate(parts):
            if part == "blocks" and k + 1 < len(parts) and parts[k + 1].isdigit():
                return int(parts[k + 1]) + 1
            if part in ("patch_embed", "cls_token", "pos_embed", "mask_token"):
                return 0
        return self.depth + 1

    @torch.jit.ignore
    def no_weight_decay(self) -> set[str]:
        """Names of token / position parameters (timm convention)."""
        names = set()
        if self.pos_embed_type == "learned":
            names.add("pos_embed")
        if self.cls_token is not None:
            names.add("cls_token")
        if self.mask_token is not None:
            names.add("mask_token")
        return names

    # ------------------------------------------------------------------ positions
    def grid_positions(self, h: int, w: int, device: torch.device | str | None = None) -> torch.Tensor:
        """Integer ``(y, x)`` patch coordinates of an ``h x w`` grid in raster order: ``(h*w, 2)`` int64 (cached)."""
        device = torch.device(device) if device is not None else self.patch_embed.proj.weight.device
        if torch.compiler.is_compiling():  # traced: a constant the compiler folds; no host-side cache
            return self._make_grid(h, w, device)
        key = (h, w, str(device), torch.is_inference_mode_enabled())
        pos = self._grid_pos_cache.get(key)
        if pos is None:
            pos = self._make_grid(h, w, device)
            self._grid_pos_cache[key] = pos
        return pos

    @staticmethod
    def _make_grid(h: int, w: int, device) -> torch.Tensor:
        ys, xs = torch.meshgrid(torch.arange(h, device=device), torch.arange(w, device=device), indexing="ij")
        return torch.stack([ys.reshape(-1), xs.reshape(-1)], dim=-1)

    def _rope_positions(self, h: int, w: int, device, ids_keep: torch.Tensor | None) -> torch.Tensor:
        """Positions for all tokens (prefix tokens at (0, 0) = not rotated): (N, 2) or (B, N, 2)."""
        p = self.num_prefix_tokens
        if ids_keep is None and torch.compiler.is_compiling():
            grid = self.grid_positions(h, w, device)
            return torch.cat([grid.new_zeros(p, 2), grid], dim=0)
        if ids_keep is None:
            key = ("full", h, w, str(device), p, torch.is_inference_mode_enabled())
            pos = self._grid_pos_cache.get(key)
            if pos is None:
                grid = self.grid_positions(h, w, device)
                pos = torch.cat([grid.new_zeros(p, 2), grid], dim=0)
                self._grid_pos_cache[key] = pos
            return pos
        pos = self.grid_positions(h, w, device)[ids_keep]  # (B, L_keep, 2)
        if p:
            pos = torch.cat([pos.new_zeros(pos.shape[0], p, 2), pos], dim=1)
        return pos

    def abs_pos_embed(self, h: int, w: int) -> torch.Tensor | None:
        """Additive position table ``(1, prefix + h*w, D)`` for an ``h x w`` grid (None for rope / none)."""
        if self.pos_embed is None:
            return None
        if (h, w) == self.grid_size:
            return self.pos_embed
        if self.pos_embed_type == "learned":
            return resize_pos_embed(self.pos_embed, (h, w), self.grid_size, self.num_prefix_tokens)
        if torch.compiler.is_compiling():  # traced: computed in the graph (constant-folded), no cache
            return get_2d_sincos_pos_embed(
                self.embed_dim, (h, w), self.num_prefix_tokens, device=self.pos_embed.device,
                dtype=self.pos_embed.dtype,
            )[None]
        key = (h, w, str(self.pos_embed.device), self.pos_embed.dtype, torch.is_inference_mode_enabled())
        table = self._sincos_cache.get(key)
        if table is None:
            table = get_2d_sincos_pos_embed(
                self.embed_dim,
                (h, w),
                self.num_prefix_tokens,
                device=self.pos_embed.device,
                dtype=self.pos_embed.dtype,
            )[None]
            self._sincos_cache[key] = table
        return table

    # ------------------------------------------------------------------ forward
    def patchify_embed(self, x: torch.Tensor) -> tuple[torch.Tensor, tuple[int, int]]:
        """Patch embedding only: ``(B, C, H, W)`` -> ``(tokens (B, L, D), (h, w))`` with ``L = h*w`` (no positions)."""
        if x.ndim != 4 or x.shape[1] != self.in_chans:
            raise ValueError(f"expected input (B, {self.in_chans}, H, W), got {tuple(x.shape)}")
        H, W = x.shape[-2:]
        p = self.patch_size
        if H % p or W % p:
            raise ValueError(f"input size {H}x{W} must be a multiple of patch_size {p}")
        tokens = self.patch_embed(x)
        return tokens, (H // p, W // p)

    def prepare_tokens(
        self, x: torch.Tensor, ids_keep: torch.Tensor | None = None, mask: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor | None, tuple[int, int]]:
        """Embedding stage: patchify, mask-token replacement, positions, token dropping, prefix tokens.

        Returns ``(tokens (B, prefix + L', D), rope positions or None, (h, w))``.
        """
        tokens, (h, w) = self.patchify_embed(x)
        B, L, D = tokens.shape
        if mask is not None:
            if self.mask_token is None:
                raise ValueError("mask given but this ViT has no mask token: build it with mask_token=True")
            mask = mask.reshape(mask.shape[0], -1)
            if mask.shape != (B, L):
                raise ValueError(f"mask must be (B, L) = ({B}, {L}) (or (B, h, w)), got {tuple(mask.shape)}")
            wgt = mask.to(tokens.dtype).unsqueeze(-1)
            tokens = tokens * (1.0 - wgt) + self.mask_token.to(tokens.dtype) * wgt
        pos_table = self.abs_pos_embed(h, w)
        if pos_table is not None:
            tokens = tokens + pos_table[:, self.num_prefix_tokens :].to(tokens.dtype)
        if ids_keep is not None:
            if ids_keep.ndim != 2 or ids_keep.shape[0] != B or ids_keep.is_floating_point():
                raise ValueError(
                    f"ids_keep must be an integer (B, L_keep) tensor with B={B}, got {tuple(ids_keep.shape)}"
                )
            ids_keep = ids_keep.long()
            tokens = torch.gather(tokens, 1, ids_keep.unsqueeze(-1).expand(-1, -1, D))
        if self.cls_token is not None:
            cls = self.cls_token.to(tokens.dtype).expand(B, -1, -1)
            if pos_table is not None:
                cls = cls + pos_table[:, : self.num_prefix_tokens].to(tokens.dtype)
            tokens = torch.cat([cls, tokens], dim=1)
        rope_pos = self._rope_positions(h, w, tokens.device, ids_keep) if self.rope is not None else None
        return tokens, rope_pos, (h, w)

    def forward_block(
        self, index: int, x: torch.Tensor, pos: torch.Tensor | None = None, attn_mask: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Run block ``index`` on tokens ``x`` (from :meth:`prepare_tokens` or the previous block), with the
        RoPE positions ``pos`` that :meth:`prepare_tokens` returned and the encoder's gradient checkpointing.

        The public per-block step for methods that need every block's output or act between blocks
        (CroCo-style encoders, MAE-style token dropping with attention masks); ``attn_mask`` needs sin-cos /
        learned / no positions (a timm ``Block``).
        """
        return run_block(self.blocks[index], x, pos, attn_mask, self.grad_checkpointing)

    def forward_features(
        self, x: torch.Tensor, ids_keep: torch.Tensor | None = None, mask: torch.Tensor | None = None
    ) -> torch.Tensor:
        """All blocks + final norm -> ``(B, prefix + L', D)``.

        Args:
            x: images ``(B, C, H, W)``, H and W multiples of ``patch_size``.
            ids_keep: ``(B, L_keep)`` int64 indices of patches to keep (MAE): positions are added before the
                gather so kept tokens carry their true positions (RoPE positions are gathered likewise);
                output order follows ``ids_keep``.
            mask: ``(B, L)`` (or ``(B, h, w)``) bool/0-1: patches where True are replaced by the mask token
                before the position embedding (SimMIM); needs ``mask_token=True``.
        """
        tokens, pos, _ = self.prepare_tokens(x, ids_keep=ids_keep, mask=mask)
        for i in range(self.depth):
            tokens = self.forward_block(i, tokens, pos)
        return self.norm(tokens)

    def _normalize_indices(self, indices: Iterable[int]) -> list[int]:
        out = []
        for i in indices:
            j = int(i) + self.depth if int(i) < 0 else int(i)
            if not 0 <= j < self.depth:
                raise ValueError(f"block index {i} out of range for depth {self.depth}")
            out.append(j)
        if not out:
            raise ValueError("at least one block index is needed")
        return out

    def forward_intermediates(
        self,
        x: torch.Tensor,
        indices: Sequence[int] | None = None,
        norm: bool = True,
        return_tokens: bool = False,
        keep_prefix: bool = False,
        ids_keep: torch.Tensor | None = None,
        mask: torch.Tensor | None = None,
    ) -> list[torch.Tensor]:
        """Outputs of blocks ``indices`` (default ``out_indices``), in the order given; runs blocks up to ``max(indices)``.

        Args:
            indices: block indices (negative count from the end; repeats allowed).
            norm: apply the final ``norm`` to every returned output (timm semantics).
            return_tokens: return token tensors ``(B, L', D)`` instead of maps ``(B, D, h, w)``.
            keep_prefix: with ``return_tokens``, keep the prefix tokens: ``(B, prefix + L', D)``.
            ids_keep, mask: as in :meth:`forward_features`; maps need all tokens, so ``ids_keep`` requires
                ``return_tokens=True``.

        Returns:
            list of ``(B, D, h, w)`` maps (patch tokens only), or of token tensors.
        """
        idx = self._normalize_indices(indices if indices is not None else self.out_indices)
        if ids_keep is not None and not return_tokens:
            raise ValueError("feature maps need every token: use return_tokens=True together with ids_keep")
        tokens, pos, (h, w) = self.prepare_tokens(x, ids_keep=ids_keep, mask=mask)
        wanted, saved = set(idx), {}
        for i in range(max(idx) + 1):
            tokens = self.forward_block(i, tokens, pos)
            if i in wanted:
                saved[i] = tokens
        outs = []
        p = self.num_prefix_tokens
        for i in idx:
            t = self.norm(saved[i]) if norm else saved[i]
            if return_tokens:
                outs.append(t if keep_prefix else t[:, p:])
            else:
                B, _, D = t.shape
                outs.append(t[:, p:].transpose(1, 2).reshape(B, D, h, w))
        return outs

    def pool(self, feats: torch.Tensor) -> torch.Tensor:
        """``(B, N, D)`` output of :meth:`forward_features` -> ``(B, D)`` according to ``global_pool``."""
        if self.global_pool == "token" and self.cls_token is not None:
            return feats[:, 0]
        return feats[:, self.num_prefix_tokens :].mean(dim=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Pooled feature ``(B, D)`` (class token, or mean of patch tokens; see ``global_pool``)."""
        return self.pool(self.forward_features(x))


def init_mae_weights(m: nn.Module) -> None:
    """MAE initialisation of one module (use with ``module.apply``): xavier-uniform Linear, zero bias, LN (1, 0)."""
    if isinstance(m, nn.Linear):
        nn.init.xavier_uniform_(m.weight)
        if m.bias is not None:
            nn.init.zeros_(m.bias)
    elif isinstance(m, nn.LayerNorm):
        if m.weight is not None:
            nn.init.ones_(m.weight)
        if m.bias is not None:
            nn.init.zeros_(m.bias)
