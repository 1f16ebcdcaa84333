"""Checkpoint reading and key mapping for :class:`~vitlab.core.backbones.ViT` (and CroCo decoder blocks).

Supported layouts (facts about the public key names; no code copied):

* ``vitlab``: this package's own ``ViT.state_dict()``.
* ``timm``: timm ``VisionTransformer`` (`huggingface/pytorch-image-models`): ``patch_embed.proj``, ``cls_token``,
  ``pos_embed`` ``(1, prefix + L, D)``, ``blocks.{i}.{norm1, attn.qkv, attn.proj, norm2, mlp.fc1, mlp.fc2, ls1, ls2}``,
  ``norm`` or ``fc_norm``, ``head``.
* ``mae``: `facebookresearch/mae` ``models_mae.py`` (pre-training: same encoder names plus ``mask_token`` and
  ``decoder_*``; the ``pos_embed`` is the fixed sin-cos table with the class slot) and ``models_vit.py``
  (fine-tuned: ``fc_norm`` instead of ``norm`` when global pooling is used, ``head``).
* ``croco``: `naver/croco` ``CroCoNet`` encoder: ``enc_blocks.{i}`` / ``enc_norm`` (decoder keys are dropped here;
  use :func:`convert_croco_decoder` for the decoder blocks).

Mapping rules: ``head.*`` and decoder keys are dropped; ``fc_norm`` is used as ``norm`` when the checkpoint has no
``norm`` (an approximation: MAE fine-tuned models normalise the pooled feature, not the tokens); a checkpoint
``pos_embed`` is ignored for models with fixed sin-cos / RoPE / no positions (and a warning is logged if it was not
the sin-cos table), and resized (bicubic) for learned tables of another grid; the class-token slot is dropped or
zero-filled to match the model; ``mask_token`` is mapped only when the model has one of the same shape (MAE's and
CroCo's are decoder-side tokens).
"""

from __future__ import annotations

import argparse
import logging
import os
import re
from collections.abc import Mapping
from typing import NamedTuple

import torch
import torch.nn as nn

from .pos_embed import get_2d_sincos_pos_embed, infer_pos_embed_layout, resize_pos_embed

__all__ = [
    "LoadResult",
    "load_checkpoint",
    "read_checkpoint",
    "unwrap_state_dict",
    "convert_state_dict",
    "detect_format",
    "convert_croco_decoder",
    "save_checkpoint",
]

_log = logging.getLogger(__name__)

FORMATS = ("auto", "vitlab", "timm", "mae", "croco")
_WRAPPER_KEYS = ("state_dict", "model", "module", "model_state_dict", "model_state")
_ANCHOR = "patch_embed.proj.weight"


class LoadResult(NamedTuple):
    """Keys of the model absent from the checkpoint, and checkpoint keys the model does not have."""

    missing: list[str]
    unexpected: list[str]


def read_checkpoint(path: str | os.PathLike, weights_only: bool = True) -> Mapping:
    """Read a ``.safetensors`` file or a torch pickle (``.pth/.pt/.bin/.ckpt``; ``torch.load(weights_only=True)``,
    with ``argparse.Namespace`` allow-listed since MAE / CroCo checkpoints store their ``args``)."""
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"checkpoint file not found: {path}")
    try:
        if path.endswith(".safetensors"):
            from safetensors.torch import load_file

            return load_file(path, device="cpu")
        if weights_only and hasattr(torch.serialization, "safe_globals"):
            with torch.serialization.safe_globals([argparse.Namespace]):
                return torch.load(path, map_location="cpu", weights_only=True)
        return torch.load(path, map_location="cpu", weights_only=weights_only)
    except Exception as e:  # noqa: BLE001 - re-raised with the file name
        hint = (
            " (it holds non-tensor objects; pass weights_only=False if you trust it)" if weights_only else ""
        )
        raise ValueError(f"cannot read checkpoint {path}{hint}: {e}") from e


def unwrap_state_dict(
    obj: Mapping, key: str | None = None, source: str = "<state dict>"
) -> dict[str, torch.Tensor]:
    """Return the flat ``{name: tensor}`` dict inside a checkpoint.

    ``key`` (dotted for nesting, e.g. ``"model"`` or ``"state.model"``) selects a sub-dict explicitly; otherwise
    ``state_dict`` / ``model`` / ``module`` / ``model_state_dict`` wrappers are unwrapped while found. Non-tensor
    entries are dropped. Key prefixes are handled by :func:`convert_state_dict`.
    """
    if key:
        for part in key.split("."):
            if not isinstance(obj, Mapping) or part not in obj:
                avail = list(obj.keys())[:20] if isinstance(obj, Mapping) else type(obj).__name__
                raise ValueError(
                    f"checkpoint {source}: no entry {part!r} (for key {key!r}); available: {avail}"
                )
            obj = obj[part]
    else:
        while isinstance(obj, Mapping) and not any(isinstance(v, torch.Tensor) for v in obj.values()):
            for k in _WRAPPER_KEYS:
                if isinstance(obj.get(k), Mapping):
                    obj = obj[k]
                    break
            else:
                break
    if not isinstance(obj, Mapping):
        raise ValueError(f"checkpoint {source}: expected a dict of tensors, found {type(obj).__name__}")
    return {k: v for k, v in obj.items() if isinstance(v, torch.Tensor)}


def _strip_prefix(state: dict[str, torch.Tensor], source: str) -> dict[str, torch.Tensor]:
    """Remove a common prefix (``module.``, ``backbone.``, ``model.encoder.`` ...) located via the patch embedding."""
    anchors = [k for k in state if k == _ANCHOR or k.endswith("." + _ANCHOR)]
    if not anchors:
        return state
    prefix = min(anchors, key=len)[: -len(_ANCHOR)]
    if not prefix:
        return state
    return {k[len(prefix) :]: v for k, v in state.items() if k.startswith(prefix)}


def detect_format(state: Mapping[str, torch.Tensor], model: nn.Module | None = None) -> str:
    """Guess the layout of an (unwrapped, prefix-stripped) state dict: croco / mae / vitlab / timm."""
    keys = list(state)
    if any(k.startswith("enc_blocks.") for k in keys):
        return "croco"
    if any(k.startswith("decoder_") for k in keys):
        return "mae"
    if model is not None and set(keys) <= set(model.state_dict()):
        return "vitlab"
    return "timm"


def _is_sincos(pos: torch.Tensor, prefix: int, grid: tuple[int, int]) -> bool:
    ref = get_2d_sincos_pos_embed(pos.shape[-1], grid, num_prefix_tokens=prefix, dtype=torch.float32)
    return pos.ndim == 3 and pos.shape[1:] == ref.shape and torch.allclose(pos[0].float(), ref, atol=1e-4)


def convert_state_dict(
    state: Mapping[str, torch.Tensor], model: nn.Module, format: str = "auto", source: str = "<state dict>"
) -> tuple[dict[str, torch.Tensor], list[str]]:
    """Map a checkpoint state dict onto ``model`` (a ViT) names/shapes. Returns ``(new_state, dropped_keys)``.

    Raises ``ValueError`` naming ``source`` for unknown formats, unrecognisable checkpoints and shape mismatches.
    """
    if format not in FORMATS:
        raise ValueError(f"unknown checkpoint format {format!r}; choose one of {FORMATS}")
    state = _strip_prefix(dict(state), source)
    target = model.state_dict()
    if format == "auto":
        format = detect_format(state, model)
    out: dict[str, torch.Tensor] = {}
    dropped: list[str] = []

    has_norm = "norm.weight" in state or "enc_norm.weight" in state
    for k, v in state.items():
        nk = k
        if format == "croco":
            if k.startswith(("dec_", "decoder_", "prediction_head.", "enc_pos_embed")):
                dropped.append(k)
                continue
            nk = re.sub(r"^enc_blocks\.", "blocks.", nk)
            nk = re.sub(r"^enc_norm\.", "norm.", nk)
        if nk.startswith(("decoder_", "head.", "head_drop.")) and nk not in target:
            dropped.append(k)
            continue
        if nk.startswith("fc_norm."):
            if has_norm or "norm" + nk[len("fc_norm") :] not in target:
                dropped.append(k)
                continue
            nk = "norm" + nk[len("fc_norm") :]
        out[nk] = v

    # ---- prefix / position / mask tokens
    model_prefix = int(getattr(model, "num_prefix_tokens", 0))
    if "cls_token" in out and "cls_token" not in target:
        out.pop("cls_token")
        dropped.append("cls_token")
    if "mask_token" in out and (
        "mask_token" not in target or target["mask_token"].shape != out["mask_token"].shape
    ):
        out.pop("mask_token")
        dropped.append("mask_token")
    if "pos_embed" in out:
        pos = out.pop("pos_embed")
        pos_type = getattr(model, "pos_embed_type", "learned" if "pos_embed" in target else "none")
        if pos.ndim == 2:
            pos = pos[None]
        try:
            ck_prefix, ck_grid = infer_pos_embed_layout(pos.shape[1], 1 if "cls_token" in state else 0)
        except ValueError as e:
            raise ValueError(f"checkpoint {source}: pos_embed {tuple(pos.shape)}: {e}") from e
        if "pos_embed" in target:
            if pos.shape[-1] != target["pos_embed"].shape[-1]:
                raise ValueError(
                    f"checkpoint {source}: shape mismatch for 'pos_embed': model expects "
                    f"{tuple(target['pos_embed'].shape)}, checkpoint has {tuple(pos.shape)}"
                )
            if ck_prefix > model_prefix:
                pos = torch.cat([pos[:, :model_prefix], pos[:, ck_prefix:]], dim=1)
            elif ck_prefix < model_prefix:
                pos = torch.cat([pos.new_zeros(1, model_prefix - ck_prefix, pos.shape[-1]), pos], dim=1)
            grid = tuple(getattr(model, "grid_size", ck_grid))
            out["pos_embed"] = resize_pos_embed(pos, grid, ck_grid, model_prefix)
        else:
            dropped.append("pos_embed")
            if pos_type == "sincos" and not _is_sincos(pos, ck_prefix, ck_grid):
                _log.warning(
                    "checkpoint %s: its pos_embed is not the fixed sin-cos table; the model uses sin-cos, "
                    "so the checkpoint's (learned) positions are discarded",
                    source,
                )

    if not any(k in target for k in out):
        raise ValueError(
            f"cannot recognise checkpoint {source} (format {format!r}): none of its keys match the model; "
            f"first keys: {list(state)[:8]}"
        )
    bad = [
        f"{k!r}: model expects {tuple(target[k].shape)}, checkpoint has {tuple(v.shape)}"
        for k, v in out.items()
        if k in target and tuple(target[k].shape) != tuple(v.shape)
    ]
    if bad:
        more = f" (and {len(bad) - 10} more)" if len(bad) > 10 else ""
        raise ValueError(f"checkpoint {source}: shape mismatch for " + "; ".join(bad[:10]) + more)
    return out, dropped


def load_checkpoint(
    model: nn.Module,
    path_or_state: str | os.PathLike | Mapping,
    format: str = "auto",
    key: str | None = None,
    strict: bool = False,
    weights_only: bool = True,
) -> LoadResult:
    """Load a checkpoint (file or state dict) into a :class:`ViT`, mapping key names.

    Args:
        model: target model.
        path_or_state: ``.pth/.pt/.bin/.ckpt/.safetensors`` path, or an already loaded (possibly nested) dict.
        format: ``"auto"`` (detect), ``"vitlab"``, ``"timm"``, ``"mae"``, ``"croco"`` (see module docstring).
        key: sub-dict holding the weights (dotted for nesting); ``None`` unwraps ``state_dict`` / ``model`` /
            ``module`` / ``model_state_dict``. Prefixes in front of ``patch_embed.proj.weight`` (``module.``,
            ``backbone.``, Lightning's ``model.`` ...) are stripped.
        strict: raise ``RuntimeError`` when keys are missing or unexpected after mapping.
        weights_only: passed to ``torch.load``.

    Returns:
        :class:`LoadResult` ``(missing, unexpected)`` (intentionally dropped keys, e.g. ``decoder_*``, are in neither).

    Raises:
        ValueError: unreadable / unrecognisable checkpoint or a shape mismatch (message names the file and key).
    """
    if format not in FORMATS:
        raise ValueError(f"unknown checkpoint format {format!r}; choose one of {FORMATS}")
    if isinstance(path_or_state, Mapping):
        source, obj = "<state dict>", path_or_state
    else:
        source = os.fspath(path_or_state)
        obj = read_checkpoint(source, weights_only=weights_only)
    state = unwrap_state_dict(obj, key=key, source=source)
    if not state:
        raise ValueError(f"cannot recognise checkpoint {source}: it holds no tensors")
    new_state, dropped = convert_state_dict(state, model, format=format, source=source)
    if dropped:
        _log.info(
            "checkpoint %s: dropped %d keys not used by the backbone (%s ...)",
            source,
            len(dropped),
            dropped[:5],
        )
    res = model.load_state_dict(new_state, strict=False)
    result = LoadResult(list(res.missing_keys), list(res.unexpected_keys))
    if strict and (result.missing or result.unexpected):
        raise RuntimeError(
            f"checkpoint {source}: missing keys {result.missing}, unexpected keys {result.unexpected}"
        )
    return result


def save_checkpoint(model_or_state: nn.Module | Mapping[str, torch.Tensor], path: str | os.PathLike) -> None:
    """Save a state dict as ``.safetensors`` (by extension) or with ``torch.save``."""
    state = model_or_state.state_dict() if isinstance(model_or_state, nn.Module) else dict(model_or_state)
    path = os.fspath(path)
    if path.endswith(".safetensors"):
        from safetensors.torch import save_file

        save_file({k: v.detach().contiguous().clone() for k, v in state.items()}, path)
    else:
        torch.save(state, path)


def convert_croco_decoder(
    state: Mapping[str, torch.Tensor], src_prefix: str = "dec_blocks.", dst_prefix: str = ""
) -> dict[str, torch.Tensor]:
    """CroCo decoder-block keys -> :class:`~vitlab.core.backbones.CrossBlock` keys.

    ``{src_prefix}{i}.cross_attn.projq/projk/projv.{weight,bias}`` are concatenated (q, k, v order) into
    ``{dst_prefix}{i}.cross_attn.qkv.*``; other keys (``norm1, attn.qkv, attn.proj, norm2, norm3, norm_y,
    cross_attn.proj, mlp.*``) are renamed only. Keys without ``src_prefix`` are ignored.
    """
    out: dict[str, torch.Tensor] = {}
    qkv: dict[str, dict[str, torch.Tensor]] = {}
    for k, v in state.items():
        if not k.startswith(src_prefix):
            continue
        rest = k[len(src_prefix) :]
        m = re.match(r"^(\d+\.cross_attn\.)proj([qkv])\.(weight|bias)$", rest)
        if m:
            qkv.setdefault(f"{dst_prefix}{m.group(1)}qkv.{m.group(3)}", {})[m.group(2)] = v
        else:
            out[dst_prefix + rest] = v
    for k, parts in qkv.items():
        if set(parts) != {"q", "k", "v"}:
            raise ValueError(f"incomplete CroCo cross-attention projections for {k}: found {sorted(parts)}")
        out[k] = torch.cat([parts["q"], parts["k"], parts["v"]], dim=0)
    return out
