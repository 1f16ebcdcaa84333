"""Binocular ViT: the CroCo-Stereo network (one encoder for both views, cross-attention decoder, DPT head).

Re-implementation of ``CroCoDownstreamBinocular`` + ``PixelwiseTaskWithDPT`` of CroCo-Stereo (Weinzaepfel et
al., "CroCo v2: Improved Cross-view Completion Pre-training for Stereo Matching and Optical Flow", ICCV 2023,
`naver/croco`), built from vitlab core parts:

* the CroCo v2 body :class:`vitlab.core.backbones.croco.CroCoNet` (shared with ``vitlab.pretrain.CroCo``):
  RoPE2D ViT encoder (both views encoded in one batch ``cat([left, right])``), ONE shared ``decoder_embed``,
  cross-attention decoder whose memory (right tokens) is the same tensor for every block, final ``dec_norm``;
* DPT head (:class:`vitlab.core.DPTHead`) over ``enc_blocks_out + dec_blocks_out`` (the last encoder entry
  enc-normed, the last decoder entry dec-normed) at the ``hooks`` indices; 2 channels = disparity + raw
  confidence, no activation.

The masked forward used by UniTT-Stereo / MaDis-Stereo (:meth:`BinocularViT.forward_masked`) keeps CroCo's
pre-training parts: a decoder-side ``mask_token`` inserted at masked positions and the ``prediction_head``
``Linear(dec_dim -> p*p*3)``; the supervised forward does not use them.
"""

from __future__ import annotations

import logging
import math
import re
from collections.abc import Mapping
from typing import NamedTuple

import torch

from vitlab.core import DPTHead
from vitlab.core.backbones import (
    CROCO_PRESETS,
    CroCoNet,
    convert_croco_decoder,
    load_checkpoint,
    patchify,
    read_checkpoint,
    unpatchify,
    unwrap_state_dict,
)
from vitlab.core.restore import skip_pretrained

from .correlation import EpipolarCorrelation

__all__ = [
    "PRESETS",
    "vitlab_croco_state",
    "BinocularViT",
    "LoadReport",
    "MaskedForward",
    "croco_hooks",
    "decoder_hooks",
    "patchify",
    "unpatchify",
]

_log = logging.getLogger(__name__)

#: preset -> (enc dim, enc depth, enc heads, dec dim, dec depth, dec heads) [code: naver/croco]
PRESETS = CROCO_PRESETS
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


class MaskedForward(NamedTuple):
    """What :meth:`BinocularViT.forward_masked` returns (``N = h * w`` patches, raster order).

    Attributes:
        disparity: ``(B, 2, H, W)`` disparity (px) and raw confidence, fp32.
        recon_left: ``(B, N, p*p*3)`` pixel prediction of every left patch (pass A's last decoder block).
        recon_right: the same for the right view (pass B), ``None`` when the right view is not masked.
        feat_left, feat_right: ``(B, N, C_enc)`` last (enc-normed) encoder layer of each view, zeros at its
            masked tokens (UniTT's consistency features; MaDis's zero-filled decoder memory).
        decoder: pass A's decoder block outputs (the last one dec-normed).
        coarse: ``(B, 1, H, W)`` the correlation's own soft-argmin disparity (px, fp32) that ``disparity``
            sits on, ``None`` without a correlation (``corr_disparities=0``).
    """

    disparity: torch.Tensor
    recon_left: torch.Tensor | None
    recon_right: torch.Tensor | None
    feat_left: torch.Tensor
    feat_right: torch.Tensor
    decoder: list[torch.Tensor]
    coarse: torch.Tensor | None = None


def _scatter_visible(visible: torch.Tensor, ids_keep: torch.Tensor, num_tokens: int) -> torch.Tensor:
    """``(B, N', C)`` tokens at ``ids_keep`` -> ``(B, num_tokens, C)`` with zeros at the masked places."""
    B, _, C = visible.shape
    full = visible.new_zeros(B, num_tokens, C)
    return full.scatter(1, ids_keep[..., None].expand(-1, -1, C), visible)


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


_OWN_ANCHOR = "encoder.patch_embed.proj.weight"


def _report(missing: list[str], unexpected: list[str], source: str, strict: bool) -> LoadReport:
    if strict and (missing or unexpected):
        raise RuntimeError(f"checkpoint {source}: missing {missing[:10]}, unexpected {unexpected[:10]}")
    return LoadReport(missing, unexpected)


def vitlab_croco_state(state: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor] | None:
    """The :class:`~vitlab.core.backbones.croco.CroCoNet` part of a vitlab checkpoint, or ``None`` for another
    layout.

    A Lightning checkpoint of ``vitlab.pretrain.CroCo`` or of a stereo module stores the network under one
    prefix (``net.``); it is located by the encoder's patch embedding (the shortest such prefix, so an EMA
    teacher copy is skipped) and stripped, which leaves :class:`BinocularViT`'s own names
    (``encoder.*, decoder_embed.*, mask_token, dec_blocks.*, dec_norm.*, prediction_head.*``).
    """
    anchors = [k for k in state if k == _OWN_ANCHOR or k.endswith("." + _OWN_ANCHOR)]
    if not anchors:
        return None
    prefix = min(anchors, key=len)[: -len(_OWN_ANCHOR)]
    return {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)}


class BinocularViT(CroCoNet):
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
        pretrained: a CroCo / CroCo-Stereo checkpoint (``.pth``), or a vitlab Lightning checkpoint of
            ``vitlab.pretrain.CroCo`` / a stereo module, loaded with :meth:`load_croco` (strict=False).
        corr_disparities: ``0`` (default) = the CroCo-Stereo network as published. ``> 0`` adds vitlab's
            :class:`~vitlab.stereo.correlation.EpipolarCorrelation` over that many px: a Siamese stride-4 cost
            volume whose soft-argmin disparity the DPT output is added to, and whose match distribution is added
            (zero-initialised) to the left tokens entering the decoder. Not in CroCo-Stereo: it gives a model
            trained from scratch on a CPU budget matching evidence from the first step (see the module).
        corr_dim: feature width of the correlation stem (32).
        corr_stride: input pixels per correlation pixel, 4 (default) or 2 (see
            :class:`~vitlab.stereo.correlation.EpipolarCorrelation`).

    Encoder, decoder and pixel head come from :class:`~vitlab.core.backbones.croco.CroCoNet` (same names and
    initialisation); the DPT head is new.
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
        corr_disparities: int = 0,
        corr_dim: int = 32,
        corr_stride: int = 4,
    ) -> None:
        if hook_mode not in HOOK_MODES:
            raise ValueError(f"hook_mode must be one of {HOOK_MODES}, got {hook_mode!r}")
        super().__init__(
            preset, enc_embed_dim, enc_depth, enc_num_heads, dec_embed_dim, dec_depth, dec_num_heads,
            patch_size=patch_size, img_size=img_size, rope_base=rope_base, mlp_ratio=mlp_ratio,
            drop_path_rate=drop_path_rate,
        )
        self.hook_mode = hook_mode
        edep, ddep, ed, dd = self.enc_depth, self.dec_depth, self.enc_embed_dim, self.dec_embed_dim
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
        self.corr = None
        if corr_disparities:
            self.corr = EpipolarCorrelation(corr_disparities, dim=corr_dim, token_dim=ed, patch_size=patch_size,
                                            stride=corr_stride)
        if pretrained and not skip_pretrained(pretrained):
            report = self.load_croco(pretrained)
            not_head = [k for k in report.missing if not k.startswith(("head.", "corr."))]
            if not_head or report.unexpected:
                _log.warning("BinocularViT: %s: missing %s, unused %s", pretrained, not_head[:10], report.unexpected[:10])

    def dense_head(self, features: list[torch.Tensor], image_size: tuple[int, int]) -> torch.Tensor:
        """DPT over ``features = enc_out + dec_out`` (or any list indexed by ``hooks``)."""
        return self.head([features[h] for h in self.hooks], image_size)

    def forward(self, left: torch.Tensor, right: torch.Tensor) -> torch.Tensor:
        """``(B, 3, H, W)`` x 2, H and W multiples of 32 (DPT fusion, spec §1.3) -> ``(B, 2, H, W)``."""
        return self._run(left, right, None, None, pretext=False).disparity

    def forward_parts(self, left: torch.Tensor, right: torch.Tensor) -> MaskedForward:
        """The unmasked forward with its parts (``disparity``, the correlation's ``coarse``, features); no
        pixel reconstruction (``recon_left = recon_right = None``)."""
        return self._run(left, right, None, None, pretext=False)

    def forward_masked(self, left: torch.Tensor, right: torch.Tensor, keep_left: torch.Tensor | None = None,
                       keep_right: torch.Tensor | None = None) -> MaskedForward:
        """The masked training forward of UniTT-Stereo and MaDis-Stereo (and, unmasked, of their teachers).

        ``keep_left`` / ``keep_right``: ``(B, N')`` visible patch indices of each view (``None`` = all visible),
        e.g. ``vitlab.core.backbones.random_masking(B, grid, r, count="mask").ids_keep`` (CroCo's count rule).
        The visible tokens of each view are encoded; the decoder reads the left view (``mask_token`` at its
        masked places) against the right view's last encoder layer, zero-filled at its masked places (pass A:
        disparity + confidence from the DPT, left reconstruction from ``prediction_head``). When ``keep_right``
        is given, pass B (same weights) reads the masked right view against the zero-filled left view and
        reconstructs the right (MaDis ``MaDis_finetuning`` mode 1 [code]). UniTT masks the left view only
        (``keep_right=None``: the right view stays whole, as in its code).

        The correlation (``corr_disparities > 0``, a vitlab addition in neither paper) always sees the full,
        unmasked views: its cost volume is the model's matching evidence, and at test time nothing is masked,
        so the training forward matches it the same way. Its coarse disparity is under the DPT output
        everywhere; its match tokens are added to the *visible* left tokens only, so a masked query token stays
        a bare ``mask_token`` and the masked-patch reconstruction still has to come from the other view (the
        cross-view completion UniTT and MaDis train; the cost volume would otherwise hand the decoder a
        summary of the hidden patches). MaDis's pass B reconstructs the right view and gets no correlation (the
        volume is aligned with the left view).

        A masked left view has no full-length encoder output, so masking the left view needs decoder-only
        hooks (``hook_mode="decoder"``).
        """
        if keep_left is not None and min(self.hooks) < self.enc_depth:
            raise ValueError(f"forward_masked: a masked left view cannot feed encoder hooks {self.hooks} "
                             f"(encoder depth {self.enc_depth}); build the model with hook_mode='decoder'")
        return self._run(left, right, keep_left, keep_right, pretext=True)

    def _run(self, left: torch.Tensor, right: torch.Tensor, keep_left: torch.Tensor | None,
             keep_right: torch.Tensor | None, pretext: bool) -> MaskedForward:
        if left.shape != right.shape:
            raise ValueError(f"left {tuple(left.shape)} and right {tuple(right.shape)} differ")
        B = left.shape[0]
        keep_left = None if keep_left is None else keep_left.sort(dim=1).values
        keep_right = None if keep_right is None else keep_right.sort(dim=1).values
        if keep_left is None and keep_right is None:  # both views in one encoder batch, as CroCo-Stereo
            enc, _, hw = self.encode(torch.cat([left, right], dim=0))
            enc_l, feat_l, feat_r = enc, enc[-1][:B], enc[-1][B:]
        else:
            enc_l, _, hw = self.encode(left, keep_left)
            enc_r, _, _ = self.encode(right, keep_right)
            n = hw[0] * hw[1]
            feat_l = enc_l[-1] if keep_left is None else _scatter_visible(enc_l[-1], keep_left, n)
            feat_r = enc_r[-1] if keep_right is None else _scatter_visible(enc_r[-1], keep_right, n)
        query = enc_l[-1][:B]
        coarse = None
        if self.corr is not None:
            coarse, corr_tokens = self.corr(left, right)
            corr_tokens = corr_tokens.to(query.dtype)
            if keep_left is not None:  # visible left tokens only (see forward_masked)
                corr_tokens = corr_tokens.gather(1, keep_left[..., None].expand(-1, -1, corr_tokens.shape[-1]))
            query = query + corr_tokens
        dec = self.decode(query, feat_r, hw, keep_left)
        if self.hook_mode == "decoder" and min(self.hooks) >= self.enc_depth:
            feats = [None] * self.enc_depth + dec  # encoder outputs unused: skip slicing them
        else:
            feats = [e[:B] for e in enc_l] + dec
        # disparity + confidence in fp32 even under bf16 autocast (regression targets, Laplacian loss)
        out = self.dense_head(feats, left.shape[-2:]).float()
        if self.corr is not None:  # the head predicts a residual to the correlation's coarse disparity
            out = torch.cat([out[:, :1] + coarse, out[:, 1:]], dim=1)
        if not pretext:
            return MaskedForward(out, None, None, feat_l, feat_r, dec, coarse)
        recon_right = None
        if keep_right is not None:
            recon_right = self.reconstruct(self.decode(enc_r[-1], feat_l, hw, keep_right)[-1])
        return MaskedForward(out, self.reconstruct(dec[-1]), recon_right, feat_l, feat_r, dec, coarse)

    # ------------------------------------------------------------------ checkpoints
    def load_croco(self, path_or_state: str | Mapping, strict: bool = False) -> LoadReport:
        """Load an official CroCo (pre-training) or CroCo-Stereo checkpoint through the key map, or a vitlab
        checkpoint (``vitlab.pretrain.CroCo`` pre-training, a stereo module) by its own names.

        vitlab checkpoints (recognised by ``[prefix.]encoder.patch_embed.proj.weight``, see
        :func:`vitlab_croco_state`) load name for name; from a CroCo pre-training run only the DPT ``head.*`` is
        missing.

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
        own_layout = vitlab_croco_state(state)
        if own_layout is not None:
            return self._load_own_layout(own_layout, source, strict)
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
        loaded |= set(self._load_fitting(new, source))
        # a CroCo-Stereo checkpoint lacks the pretext mask token and pixel head by construction
        absent = ("mask_token", "prediction_head.") if any(k.startswith("head.dpt.") for k in state) else ()
        missing = sorted(k for k in own if k not in loaded and not (absent and k.startswith(absent)))
        unexpected = sorted([k for k in state if k not in used] + [k for k in new if k not in own])
        return _report(missing, unexpected, source, strict)

    def _load_own_layout(self, state: Mapping[str, torch.Tensor], source: str, strict: bool) -> LoadReport:
        """Load vitlab's own names (a ``vitlab.pretrain.CroCo`` or stereo checkpoint, prefix stripped)."""
        fits = self._load_fitting(state, source)
        missing = sorted(k for k in self.state_dict() if k not in fits)
        return _report(missing, sorted(k for k in state if k not in fits), source, strict)

    def _load_fitting(self, new: Mapping[str, torch.Tensor], source: str) -> dict[str, torch.Tensor]:
        """Load the entries of ``new`` that name a model tensor (shapes checked first); returns them."""
        own = self.state_dict()
        bad = [f"{k}: model {tuple(own[k].shape)} vs checkpoint {tuple(v.shape)}"
               for k, v in new.items() if k in own and own[k].shape != v.shape]
        if bad:
            raise ValueError(f"checkpoint {source}: shape mismatch for " + "; ".join(bad[:8]))
        fits = {k: v for k, v in new.items() if k in own}
        self.load_state_dict(fits, strict=False)
        return fits

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
