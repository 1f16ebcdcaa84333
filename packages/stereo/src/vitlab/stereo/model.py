"""Binocular ViT: the CroCo-Stereo network (one encoder for both views, cross-attention decoder, DPT head).

Re-implementation of ``CroCoDownstreamBinocular`` + ``PixelwiseTaskWithDPT`` of CroCo-Stereo (Weinzaepfel et
al., "CroCo v2: Improved Cross-view Completion Pre-training for Stereo Matching and Optical Flow", ICCV 2023,
`naver/croco`), built from vitlab core parts:

* encoder: :class:`vitlab.core.ViT` with ``pos_embed="rope"`` (RoPE2D, base 100), no class token; both views
  are encoded in one batch ``cat([left, right])``;
* ONE shared ``decoder_embed = Linear(enc_dim -> dec_dim)`` applied to both views;
* decoder: :class:`vitlab.core.backbones.CrossBlock` (self-attention, cross-attention to the other view, MLP);
  the memory (right tokens) is the same tensor for every block; final ``dec_norm``;
* DPT head (:class:`vitlab.core.DPTHead`) over ``enc_blocks_out + dec_blocks_out`` (the last encoder entry
  enc-normed, the last decoder entry dec-normed) at the ``hooks`` indices; 2 channels = disparity + raw
  confidence, no activation.

The masked forwards used by UniTT-Stereo / MaDis-Stereo keep CroCo's pre-training parts: a decoder-side
``mask_token`` inserted at masked positions and the ``prediction_head`` ``Linear(dec_dim -> p*p*3)``.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from functools import partial
from typing import NamedTuple

import torch
import torch.nn as nn

from vitlab.core import DPTHead, ViT
from vitlab.core.backbones import (
    CrossBlock,
    convert_croco_decoder,
    init_mae_weights,
    load_checkpoint,
    read_checkpoint,
)
from vitlab.core.backbones.checkpoint import unwrap_state_dict
from vitlab.core.restore import skip_pretrained

__all__ = [
    "PRESETS",
    "BinocularViT",
    "LoadReport",
    "croco_hooks",
    "decoder_hooks",
    "patchify",
    "unpatchify",
]

#: preset -> (enc dim, enc depth, enc heads, dec dim, dec depth, dec heads) [code: naver/croco]
PRESETS: dict[str, tuple[int, int, int, int, int, int]] = {
    "B-S": (768, 12, 12, 512, 8, 16),
    "B-B": (768, 12, 12, 768, 12, 12),
    "L-B": (1024, 24, 16, 768, 12, 12),
}
HOOK_MODES = ("croco", "decoder")


def croco_hooks(enc_depth: int, dec_depth: int) -> list[int]:
    """CroCo-Stereo hooks into ``enc_out + dec_out``: ``[E+D-1 - i*s for i = 3..0]``.

    ``s = {8: 3, 12: 4, 24: 8}[D]`` in CroCo; ``ceil(D/3)`` reproduces those and generalises to other depths
    ([inferred] for D not in {8, 12, 24}). L-B -> [23, 27, 31, 35], B-B -> [11, 15, 19, 23], B-S -> [10, 13, 16, 19].
    """
    s = math.ceil(dec_depth / 3)
    last = enc_depth + dec_depth - 1
    hooks = [last - i * s for i in (3, 2, 1, 0)]
    if hooks[0] < 0:
        raise ValueError(f"encoder depth {enc_depth} too small for decoder depth {dec_depth} hooks {hooks}")
    return hooks


def decoder_hooks(enc_depth: int, dec_depth: int) -> list[int]:
    """Decoder-only hooks of UniTT-Stereo: decoder blocks 1, 4, 7, 11 for a 12-block decoder [code].

    Other decoder depths use 4 evenly spaced blocks from 0 to D-1 [inferred].
    """
    if dec_depth == 12:
        rel = [1, 4, 7, 11]
    else:
        rel = [min(dec_depth - 1, round(i * (dec_depth - 1) / 3)) for i in range(4)]
    return [enc_depth + r for r in rel]


def patchify(images: torch.Tensor, patch_size: int) -> torch.Tensor:
    """``(B, 3, H, W)`` -> ``(B, L, p*p*3)`` in CroCo/MAE order (row-major patches, ``(py, px, c)`` inside)."""
    B, C, H, W = images.shape
    p = patch_size
    h, w = H // p, W // p
    x = images.reshape(B, C, h, p, w, p)
    return torch.einsum("nchpwq->nhwpqc", x).reshape(B, h * w, p * p * C)


def unpatchify(tokens: torch.Tensor, patch_size: int, hw: tuple[int, int], channels: int = 3) -> torch.Tensor:
    """Inverse of :func:`patchify`."""
    B = tokens.shape[0]
    p, (h, w) = patch_size, hw
    x = tokens.reshape(B, h, w, p, p, channels)
    return torch.einsum("nhwpqc->nchpwq", x).reshape(B, channels, h * p, w * p)


class LoadReport(NamedTuple):
    missing: list[str]
    unexpected: list[str]


_DPT_RENAMES = (
    (r"^scratch\.layer(\d)_rn\.", lambda m: f"layer_rn.{int(m.group(1)) - 1}."),
    (r"^scratch\.refinenet(\d)\.resConfUnit1\.", lambda m: f"refinenet.{int(m.group(1)) - 1}.res1."),
    (r"^scratch\.refinenet(\d)\.resConfUnit2\.", lambda m: f"refinenet.{int(m.group(1)) - 1}.res2."),
    (r"^scratch\.refinenet(\d)\.out_conv\.", lambda m: f"refinenet.{int(m.group(1)) - 1}.out_conv."),
)


def convert_croco_dpt(state: Mapping[str, torch.Tensor], prefix: str = "head.dpt.") -> dict[str, torch.Tensor]:
    """CroCo-Stereo ``PixelwiseTaskWithDPT`` keys (``head.dpt.*``) -> :class:`vitlab.core.DPTHead` keys.

    ``act_postprocess.i.j`` and ``head.k`` keep their names; ``scratch.layer{k}_rn`` -> ``layer_rn.{k-1}``,
    ``scratch.refinenet{k}.resConfUnit{1,2}`` -> ``refinenet.{k-1}.res{1,2}``. CroCo's never-called first
    residual unit of ``refinenet4`` has no counterpart and is dropped.
    """
    out = {}
    for k, v in state.items():
        if not k.startswith(prefix):
            continue
        rest = k[len(prefix):]
        if rest.startswith("scratch.refinenet4.resConfUnit1."):
            continue
        for pat, rep in _DPT_RENAMES:
            rest = re.sub(pat, rep, rest)
        out[rest] = v
    return out


_CROCO_ALIASES = (
    (re.compile(r"^head\.dpt\.act_(\d)_postprocess\.(.*)$"), lambda m: f"head.dpt.act_postprocess.{int(m.group(1)) - 1}.{m.group(2)}"),
    (re.compile(r"^head\.dpt\.scratch\.layer_rn\.(\d)\.(.*)$"), lambda m: f"head.dpt.scratch.layer{int(m.group(1)) + 1}_rn.{m.group(2)}"),
)


def _croco_alias_keys(state: Mapping[str, torch.Tensor], source: str) -> set[str]:
    """Keys of an official CroCo-Stereo state dict that name a tensor twice or are never used.

    CroCo's DPT registers ``act_{k}_postprocess`` both alone and inside ``act_postprocess`` (and
    ``scratch.layer{k}_rn`` inside ``scratch.layer_rn`` in some versions), so ``state_dict()`` holds each of
    these tensors under two names; ``scratch.refinenet4.resConfUnit1`` is built but never called. They are
    accounted for (not reported as unexpected); an alias whose value differs from its canonical key is an error.
    """
    out = set()
    for k, v in state.items():
        if k.startswith("head.dpt.scratch.refinenet4.resConfUnit1."):
            out.add(k)
            continue
        for pat, canon in _CROCO_ALIASES:
            m = pat.match(k)
            if m is None:
                continue
            c = canon(m)
            if c in state:
                if state[c].shape != v.shape or not torch.equal(state[c], v):
                    raise ValueError(f"checkpoint {source}: alias {k} differs from {c}")
                out.add(k)
    return out


class BinocularViT(nn.Module):
    """CroCo-Stereo binocular ViT: ``forward(left, right) -> (B, 2, H, W)`` = disparity, raw confidence.

    Args:
        preset: ``"B-S"``, ``"B-B"`` or ``"L-B"`` (CroCo v2 ViT-Base/Large encoder with a Small/Base decoder,
            table in :data:`PRESETS`); ``None`` = use the explicit sizes below.
        enc_embed_dim, enc_depth, enc_num_heads: encoder size (override the preset; defaults = B-B).
        dec_embed_dim, dec_depth, dec_num_heads: decoder size (override the preset).
        patch_size: 16 (CroCo).
        img_size: default grid of the encoder (RoPE works for any multiple of the patch size).
        rope_base: RoPE2D frequency base (100, "RoPE100").
        hooks: indices into ``enc_out + dec_out`` feeding the DPT head; ``None`` = from ``hook_mode``.
        hook_mode: ``"croco"`` (:func:`croco_hooks`, CroCo-Stereo) or ``"decoder"`` (:func:`decoder_hooks`,
            UniTT/MaDis: decoder blocks only, because a masked left encoder output cannot feed a dense head).
        out_channels: head outputs (2 = disparity + confidence).
        layer_dims, feature_dim, last_dim: DPT widths (96, 192, 384, 768) / 256 / 32 as in CroCo-Stereo.
        mlp_ratio: 4. drop_path_rate: 0 (CroCo uses none).
        pretrained: a CroCo / CroCo-Stereo checkpoint (``.pth``) loaded with :meth:`load_croco` (strict=False).

    Initialisation: encoder as MAE/CroCo (core ViT), decoder Linear layers xavier-uniform, ``mask_token``
    N(0, 0.02).
    """

    def __init__(
        self,
        preset: str | None = None,
        enc_embed_dim: int | None = None,
        enc_depth: int | None = None,
        enc_num_heads: int | None = None,
        dec_embed_dim: int | None = None,
        dec_depth: int | None = None,
        dec_num_heads: int | None = None,
        patch_size: int = 16,
        img_size: int | tuple[int, int] = 224,
        rope_base: float = 100.0,
        hooks: list[int] | None = None,
        hook_mode: str = "croco",
        out_channels: int = 2,
        layer_dims: tuple[int, int, int, int] | list[int] = (96, 192, 384, 768),
        feature_dim: int = 256,
        last_dim: int = 32,
        mlp_ratio: float = 4.0,
        drop_path_rate: float = 0.0,
        pretrained: str | None = None,
    ) -> None:
        super().__init__()
        if hook_mode not in HOOK_MODES:
            raise ValueError(f"hook_mode must be one of {HOOK_MODES}, got {hook_mode!r}")
        ed, edep, eh, dd, ddep, dh = self.resolve_sizes(
            preset, enc_embed_dim, enc_depth, enc_num_heads, dec_embed_dim, dec_depth, dec_num_heads)
        self.enc_embed_dim, self.enc_depth, self.dec_embed_dim, self.dec_depth = ed, edep, dd, ddep
        self.patch_size = patch_size
        self.hook_mode = hook_mode
        self.encoder = ViT(
            embed_dim=ed, depth=edep, num_heads=eh, patch_size=patch_size, img_size=img_size,
            mlp_ratio=mlp_ratio, pos_embed="rope", rope_base=rope_base, class_token=False,
            drop_path_rate=drop_path_rate,
        )
        self.rope = self.encoder.rope  # one RoPE2D for encoder and decoder
        self.decoder_embed = nn.Linear(ed, dd, bias=True)
        self.mask_token = nn.Parameter(torch.zeros(1, 1, dd))
        dpr = [float(r) for r in torch.linspace(0, drop_path_rate, ddep)]
        self.dec_blocks = nn.ModuleList(
            CrossBlock(dd, dh, mlp_ratio=mlp_ratio, qkv_bias=True, drop_path=dpr[i], rope=self.rope)
            for i in range(ddep)
        )
        self.dec_norm = partial(nn.LayerNorm, eps=1e-6)(dd)
        self.prediction_head = nn.Linear(dd, patch_size**2 * 3)
        if hooks is None:
            hooks = croco_hooks(edep, ddep) if hook_mode == "croco" else decoder_hooks(edep, ddep)
        hooks = [int(h) for h in hooks]
        if len(hooks) != 4 or not all(0 <= h < edep + ddep for h in hooks):
            raise ValueError(f"hooks must be 4 indices in [0, {edep + ddep}), got {hooks}")
        self.hooks = hooks
        self.head = DPTHead(
            [ed if h < edep else dd for h in hooks], out_channels, layer_dims=layer_dims,
            feature_dim=feature_dim, last_dim=last_dim, patch_size=patch_size, fp32_output=True,
        )
        self._init_decoder()
        if pretrained and not skip_pretrained(pretrained):
            self.load_croco(pretrained)

    @staticmethod
    def resolve_sizes(preset: str | None = None, *overrides: int | None) -> tuple[int, ...]:
        """``(enc_dim, enc_depth, enc_heads, dec_dim, dec_depth, dec_heads)`` of a preset with overrides."""
        if preset is not None and preset not in PRESETS:
            raise ValueError(f"unknown preset {preset!r}; choose one of {sorted(PRESETS)}")
        base = PRESETS[preset or "B-B"]
        overrides = overrides + (None,) * (6 - len(overrides))
        return tuple(int(o) if o else b for o, b in zip(overrides, base))

    def _init_decoder(self) -> None:
        for m in [self.decoder_embed, self.prediction_head, *self.dec_blocks.modules(), self.dec_norm]:
            init_mae_weights(m)
        nn.init.normal_(self.mask_token, std=0.02)

    # ------------------------------------------------------------------ helpers
    @torch.jit.ignore
    def no_weight_decay(self) -> set[str]:
        return {"mask_token"}

    def encode(
        self, images: torch.Tensor, ids_keep: torch.Tensor | None = None
    ) -> tuple[list[torch.Tensor], torch.Tensor, tuple[int, int]]:
        """Encoder on (visible) tokens: ``(all block outputs, last one enc-normed; positions (B|1, N', 2); (h, w))``."""
        if ids_keep is not None:
            ids_keep = ids_keep.sort(dim=1).values  # raster order, like CroCo's boolean selection
        x, pos, hw = self.encoder.prepare_tokens(images, ids_keep=ids_keep)
        outs = []
        for blk in self.encoder.blocks:
            x = self.encoder._block(blk, x, pos)
            outs.append(x)
        outs[-1] = self.encoder.norm(outs[-1])
        if pos.ndim == 2:
            pos = pos[None].expand(x.shape[0], -1, -1)
        return outs, pos, hw

    def full_positions(self, batch: int, hw: tuple[int, int], device) -> torch.Tensor:
        """Grid positions ``(N, 2)`` (shared by the batch; RoPE2D broadcasts them)."""
        return self.encoder.grid_positions(hw[0], hw[1], device)

    def decode(
        self,
        query: torch.Tensor,
        memory: torch.Tensor,
        hw: tuple[int, int],
        ids_keep: torch.Tensor | None = None,
    ) -> list[torch.Tensor]:
        """Decoder blocks; ``query`` holds the visible tokens at ``ids_keep`` (None = all), ``memory`` all tokens.

        Masked query positions get ``mask_token`` (after ``decoder_embed``). Returns every block output, the
        last one dec-normed. Both views share ``decoder_embed``; the memory is never updated.
        """
        B = query.shape[0]
        n = hw[0] * hw[1]
        q = self.decoder_embed(query)
        if ids_keep is not None:
            full = self.mask_token.to(q.dtype).expand(B, n, -1).clone()
            idx = ids_keep.sort(dim=1).values
            q = full.scatter(1, idx[..., None].expand(-1, -1, q.shape[-1]), q)
        y = self.decoder_embed(memory)
        pos = self.full_positions(B, hw, q.device)
        outs = []
        for blk in self.dec_blocks:
            q, y = blk(q, y, pos, pos)
            outs.append(q)
        outs[-1] = self.dec_norm(outs[-1])
        return outs

    def dense_head(self, features: list[torch.Tensor], image_size: tuple[int, int]) -> torch.Tensor:
        """DPT over ``features = enc_out + dec_out`` (or any list indexed by ``hooks``)."""
        return self.head([features[h] for h in self.hooks], image_size)

    def forward(self, left: torch.Tensor, right: torch.Tensor) -> torch.Tensor:
        """``(B, 3, H, W)`` x 2, H and W multiples of 32 (DPT fusion, spec §1.3) -> ``(B, 2, H, W)``."""
        if left.shape != right.shape:
            raise ValueError(f"left {tuple(left.shape)} and right {tuple(right.shape)} differ")
        B = left.shape[0]
        enc, _, hw = self.encode(torch.cat([left, right], dim=0))
        dec = self.decode(enc[-1][:B], enc[-1][B:], hw)
        if self.hook_mode == "decoder" and min(self.hooks) >= self.enc_depth:
            feats = [None] * self.enc_depth + dec  # encoder outputs unused: skip slicing them
        else:
            feats = [e[:B] for e in enc] + dec
        # disparity + confidence in fp32 even under bf16 autocast (regression targets, Laplacian loss)
        return self.dense_head(feats, left.shape[-2:]).float()

    def reconstruct(self, dec_last: torch.Tensor) -> torch.Tensor:
        """Pixel prediction per patch ``(B, L, p*p*3)`` from the (dec-normed) last decoder output."""
        return self.prediction_head(dec_last)

    # ------------------------------------------------------------------ checkpoints
    def load_croco(self, path_or_state: str | Mapping, strict: bool = False) -> LoadReport:
        """Load an official CroCo (pre-training) or CroCo-Stereo checkpoint through the key map.

        Encoder keys (``patch_embed``, ``enc_blocks``, ``enc_norm``) go through core
        ``load_checkpoint(format="croco")``; ``dec_blocks`` through ``convert_croco_decoder`` (cross-attention
        ``projq/projk/projv`` fused); ``decoder_embed``, ``dec_norm``, ``mask_token``, ``prediction_head`` keep
        their names; a CroCo-Stereo ``head.dpt.*`` maps onto the DPT head (:func:`convert_croco_dpt`).
        ``enc_pos_embed`` / ``dec_pos_embed`` (CroCo v1 sin-cos tables) are ignored: this model uses RoPE.
        Returns the model keys not loaded (``missing``) and checkpoint keys without a place (``unexpected``).
        The official DPT's alias keys (``act_{k}_postprocess``, see :func:`_croco_alias_keys`) are recognised,
        and the pretext parts a CroCo-Stereo checkpoint (it has ``head.dpt.*``) lacks by construction,
        ``mask_token`` and ``prediction_head``, are not reported missing; so an official CroCo-Stereo checkpoint
        loads with ``strict=True``. From a CroCo pre-training checkpoint only the new DPT ``head.*`` is missing.
        """
        if isinstance(path_or_state, Mapping):
            source, obj = "<state dict>", path_or_state
        else:
            source, obj = str(path_or_state), read_checkpoint(path_or_state)
        state = unwrap_state_dict(obj, source=source)
        if not any(k.startswith(("enc_blocks.", "dec_blocks.")) for k in state):
            raise ValueError(
                f"checkpoint {source}: not a CroCo checkpoint (no 'enc_blocks.*' / 'dec_blocks.*' keys); "
                f"first keys: {list(state)[:8]}"
            )
        own = self.state_dict()
        loaded: set[str] = set()
        used: set[str] = set()
        res = load_checkpoint(self.encoder, state, format="croco", strict=False)
        loaded |= {f"encoder.{k}" for k in self.encoder.state_dict() if k not in res.missing}
        used |= {k for k in state if k.startswith(("enc_blocks.", "enc_norm.", "patch_embed."))}
        new: dict[str, torch.Tensor] = {}
        new.update(convert_croco_decoder(state, "dec_blocks.", "dec_blocks."))
        for k in ("decoder_embed.weight", "decoder_embed.bias", "dec_norm.weight", "dec_norm.bias",
                  "mask_token", "prediction_head.weight", "prediction_head.bias"):
            if k in state:
                new[k] = state[k]
        aliases = _croco_alias_keys(state, source)
        new.update({f"head.{k}": v for k, v in convert_croco_dpt(
            {k: v for k, v in state.items() if k not in aliases}).items()})
        used |= {k for k in state if k.startswith(("dec_blocks.", "head.dpt."))} | {k for k in new if k in state}
        used |= {k for k in state if k in ("enc_pos_embed", "dec_pos_embed")}
        used |= aliases
        bad = [f"{k}: model {tuple(own[k].shape)} vs checkpoint {tuple(v.shape)}"
               for k, v in new.items() if k in own and own[k].shape != v.shape]
        if bad:
            raise ValueError(f"checkpoint {source}: shape mismatch for " + "; ".join(bad[:8]))
        fits = {k: v for k, v in new.items() if k in own}
        self.load_state_dict(fits, strict=False)
        loaded |= set(fits)
        # a CroCo-Stereo checkpoint lacks the pretext mask token and pixel head by construction
        absent = ("mask_token", "prediction_head.") if any(k.startswith("head.dpt.") for k in state) else ()
        missing = sorted(k for k in own if k not in loaded and not (absent and k.startswith(absent)))
        unexpected = sorted([k for k in state if k not in used] + [k for k in new if k not in own])
        if strict and (missing or unexpected):
            raise RuntimeError(f"checkpoint {source}: missing {missing[:10]}, unexpected {unexpected[:10]}")
        return LoadReport(missing, unexpected)

    @classmethod
    def from_croco_checkpoint(cls, path: str, **kwargs) -> BinocularViT:
        """Build the architecture from a checkpoint's ``croco_kwargs`` (CroCo stores them) and load it."""
        obj = read_checkpoint(path)
        ck = dict(obj.get("croco_kwargs", {})) if isinstance(obj, Mapping) else {}
        arch = {k: ck[k] for k in ("enc_embed_dim", "enc_depth", "enc_num_heads", "dec_embed_dim",
                                    "dec_depth", "dec_num_heads", "patch_size") if k in ck}
        pos = str(ck.get("pos_embed", "RoPE100"))
        if pos.startswith("RoPE"):
            arch["rope_base"] = float(pos[4:] or 100)
        model = cls(**{**arch, **kwargs})
        model.load_croco(obj)
        return model
