"""SG-MIM: structured-knowledge-guided MIM (Son, Choi, Min, arXiv 2409.02513; `Ho1guma/SG-MIM`).

[code] (first commit of the official SimMIM fork): the image branch is SimMIM (mask tokens inside the encoder,
1x1 conv + PixelShuffle head, masked L1 / 3). A lightweight, MLP-only *relational guidance* branch embeds the
depth map with a patch embedding (+ LN) and Swin ``PatchMerging`` stages; **selective masking** multiplies its
tokens by the image mask, so depth is seen exactly where the image is masked (complementary masks). One
pre-LN fusion block lets image tokens (queries) cross-attend to depth tokens (keys/values), 8 heads, no qkv
bias, then an MLP (ratio 4, GELU). The image head reads the encoder output ``z``; the depth head
(``Conv1x1(D -> p*p) + PixelShuffle(p)``) reads the fused ``z_f``. Losses: ``L_img`` = SimMIM L1 on
image-masked pixels; ``L_dep = sum(|d - d_hat| (1 - M)) / (sum(1 - M) + 1e-5)`` on image-*visible* pixels;
``L = L_img + L_dep``. Pseudo-depth is MultiMAE's 16-bit PNG divided by 2^16.

[inferred] adaptations for a plain ViT (the official widths 1024 and 6x6 tokens are Swin-B specific):
``log2(patch_size / depth_patch_size)`` merging stages bring the depth tokens to the ViT grid, then a linear
projection to the encoder width (``depth_embed_dim`` sets the first width); invalid (+inf) depth pixels are
zero in the input and excluded from ``L_dep``; ``depth_scale`` maps metric depth to ~[0, 1]; ``lambda_depth``
(1.0 = official) weights ``L_dep``. The later sparse-ResNet depth encoder of the repository's HEAD is not
implemented.
"""

from __future__ import annotations

import math
from functools import partial
from typing import Any

import torch
import torch.nn.functional as F
from timm.layers import Mlp, PatchEmbed
from timm.models.swin_transformer import PatchMerging
from torch import Tensor, nn

from vitlab.core import ViT
from vitlab.pretrain.masking import ComplementaryMask, MaskGenerator, MaskOutput
from vitlab.pretrain.mto import MTO
from vitlab.pretrain.simmim import PixelShuffleDecoder, SimMIM

__all__ = ["SGMIM", "DepthGuidanceEncoder", "FusionBlock"]


class DepthGuidanceEncoder(nn.Module):
    """MLP-only depth branch: ``PatchEmbed(p_d, 1 -> C, LN)`` -> selective masking -> ``PatchMerging`` x k -> Linear.

    Args:
        out_dim: width of the image tokens it is fused with.
        patch_size: the ViT patch size (its grid is the target grid).
        depth_patch_size: first patch size (4, as the official Swin stem); ``patch_size / depth_patch_size`` must
            be a power of two.
        embed_dim: width after the patch embedding (128); doubled by every merge.
        in_chans: 1.
    """

    compile_region = True  # ``compile: true`` compiles the depth branch (vitlab.core.perf.compile_regions)

    def __init__(self, out_dim: int, patch_size: int = 16, depth_patch_size: int = 4, embed_dim: int = 128,
                 in_chans: int = 1) -> None:
        super().__init__()
        ratio = patch_size // depth_patch_size
        if patch_size % depth_patch_size or ratio & (ratio - 1):
            raise ValueError(
                f"SG-MIM: patch_size / depth_patch_size must be a power of two, got {patch_size}/{depth_patch_size}"
            )
        self.depth_patch_size = depth_patch_size
        self.scale = ratio
        self.embed = PatchEmbed(None, depth_patch_size, in_chans, embed_dim, norm_layer=nn.LayerNorm,
                                output_fmt="NHWC", strict_img_size=False)
        dims = [embed_dim * 2**i for i in range(int(math.log2(ratio)) + 1)]
        self.merges = nn.ModuleList(PatchMerging(dims[i], dims[i + 1]) for i in range(len(dims) - 1))
        self.proj = nn.Linear(dims[-1], out_dim) if dims[-1] != out_dim else nn.Identity()

    def masked_embed(self, depth: Tensor, keep: Tensor, grid: tuple[int, int]) -> Tensor:
        """Depth tokens ``(B, h*s, w*s, C)`` after selective masking: zero where ``keep`` (image mask) is 0."""
        y = self.embed(depth)
        B = y.shape[0]
        w = keep.reshape(B, 1, *grid)
        w = w.repeat_interleave(self.scale, 2).repeat_interleave(self.scale, 3)
        return y * w[:, 0, :, :, None].to(y.dtype)

    def forward(self, depth: Tensor, keep: Tensor, grid: tuple[int, int]) -> Tensor:
        """``(B, 1, H, W)`` depth and ``(B, L)`` keep weights -> ``(B, L, out_dim)`` tokens on the ViT grid."""
        y = self.masked_embed(depth, keep, grid)
        for m in self.merges:
            y = m(y)
        return self.proj(y.flatten(1, 2))


class FusionBlock(nn.Module):
    """Pre-LN cross-attention block: ``z_f = z + CrossAttn(LN(z), LN(z_d))``; ``z_f = z_f + MLP(LN(z_f))``.

    ``norm_eps``: LayerNorm eps, 1e-5 as the official ``Fusion_blk(..., nn.LayerNorm)`` (PyTorch default).
    """

    compile_region = True  # ``compile: true`` compiles it with the encoder blocks (vitlab.core.perf)

    def __init__(self, dim: int, num_heads: int = 8, mlp_ratio: float = 4.0, qkv_bias: bool = False,
                 norm_eps: float = 1e-5) -> None:
        super().__init__()
        if dim % num_heads:
            raise ValueError(f"SG-MIM fusion: dim {dim} not divisible by {num_heads} heads")
        norm = partial(nn.LayerNorm, eps=norm_eps)
        self.num_heads = num_heads
        self.norm_q, self.norm_kv, self.norm2 = norm(dim), norm(dim), norm(dim)
        self.q = nn.Linear(dim, dim, bias=qkv_bias)
        self.kv = nn.Linear(dim, 2 * dim, bias=qkv_bias)
        self.proj = nn.Linear(dim, dim)
        self.mlp = Mlp(dim, int(dim * mlp_ratio), act_layer=nn.GELU)

    def forward(self, z: Tensor, zd: Tensor) -> Tensor:
        B, N, D = z.shape
        h = self.num_heads
        q = self.q(self.norm_q(z)).reshape(B, N, h, D // h).transpose(1, 2)
        k, v = self.kv(self.norm_kv(zd)).reshape(B, zd.shape[1], 2, h, D // h).permute(2, 0, 3, 1, 4)
        a = F.scaled_dot_product_attention(q, k, v)  # scale = head_dim ** -0.5
        z = z + self.proj(a.transpose(1, 2).reshape(B, N, D))
        return z + self.mlp(self.norm2(z))


class SGMIM(SimMIM):
    """SG-MIM pre-training: SimMIM image branch + depth guidance branch (see the module docstring).

    Args:
        encoder: ViT with ``mask_token: true``.
        masking: image mask generator (default ``BlockRandomMask(32, 0.6)``); the depth stream uses its
            complement (:class:`~vitlab.pretrain.masking.ComplementaryMask`).
        depth_key: batch entry with ``(B, 1, H, W)`` depth (``depth`` for SyntheticScenes and the pseudo-depth
            folders).
        depth_scale: multiplies depth before use (SyntheticScenes metres: 0.1; MultiMAE PNGs already /2^16: 1.0).
        depth_patch_size, depth_embed_dim: depth branch stem (4, 128).
        fusion_heads: 8. lambda_depth: weight of ``L_dep`` (1.0).
        mto, base_lr, lr_batch_divisor, **kwargs: as :class:`SimMIM`.
    """

    def __init__(
        self,
        encoder: ViT,
        masking: MaskGenerator | None = None,
        depth_key: str = "depth",
        depth_scale: float = 1.0,
        depth_patch_size: int = 4,
        depth_embed_dim: int = 128,
        fusion_heads: int = 8,
        lambda_depth: float = 1.0,
        mto: MTO | None = None,
        base_lr: float | None = 1e-4,
        lr_batch_divisor: int = 512,
        **kwargs,
    ) -> None:
        super().__init__(encoder=encoder, masking=masking, mto=mto, base_lr=base_lr,
                         lr_batch_divisor=lr_batch_divisor, **kwargs)
        self.save_hparams("encoder", "masking", "mto")
        D, p = encoder.embed_dim, encoder.patch_size
        self.depth_key = depth_key
        self.depth_scale = depth_scale
        self.lambda_depth = lambda_depth
        self.depth_encoder = DepthGuidanceEncoder(D, p, depth_patch_size, depth_embed_dim)
        self.fusion = FusionBlock(D, fusion_heads)
        self.depth_decoder = PixelShuffleDecoder(D, p, 1)

    def depth_input(self, batch: dict[str, Tensor]) -> tuple[Tensor, Tensor]:
        """``(depth scaled, invalid -> 0, valid mask)``, both ``(B, 1, H, W)``."""
        if self.depth_key not in batch:
            raise KeyError(f"SGMIM: batch has no {self.depth_key!r} entry (keys: {sorted(batch)}); add the "
                           "depth modality to the data")
        d = batch[self.depth_key]
        if d.ndim == 3:
            d = d[:, None]
        valid = torch.isfinite(d)
        return torch.where(valid, d * self.depth_scale, torch.zeros_like(d)), valid.to(d.dtype)

    def encode(self, images: Tensor, masks: MaskOutput, batch: dict[str, Tensor]) -> dict[str, Any]:
        out = super().encode(images, masks, batch)
        depth, valid = self.depth_input(batch)
        zd = self.depth_encoder(depth, ComplementaryMask.keep(masks.mask), masks.grid)
        z = out["tokens"][:, self.encoder.num_prefix_tokens :]
        out.update(depth=depth, valid=valid, fused=self.fusion(z, zd))
        return out

    def decode(self, latent: dict[str, Any], masks: MaskOutput, batch: dict[str, Tensor]) -> dict[str, Any]:
        out = super().decode(latent, masks, batch)
        B, L, D = latent["fused"].shape
        fmap = latent["fused"].transpose(1, 2).reshape(B, D, *masks.grid)
        out["pred_depth"] = self.depth_decoder(fmap)
        return out

    def loss(self, out, images, masks, batch) -> dict[str, Tensor]:
        losses = super().loss(out, images, masks, batch)
        w = ComplementaryMask.visible(masks.pixel_mask(self.patch_size)) * out["valid"]
        dep = ((out["pred_depth"].float() - out["depth"].float()).abs() * w).sum() / (w.sum() + 1e-5)
        losses["loss_img"] = losses["loss_mim"]
        losses["loss_depth"] = dep
        losses["loss"] = losses["loss"] + self.lambda_depth * dep
        return losses
