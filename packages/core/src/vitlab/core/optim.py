"""Optimizer parameter groups and the per-step warmup + cosine schedule.

Every vitlab LightningModule builds its optimizer from here, so the recipes of MAE, SimMIM,
CroCo-Stereo and BEiT-style fine-tuning share one implementation:

* no weight decay on 1-D parameters (norms, biases) and on tokens/position embeddings that the
  module lists in ``no_weight_decay()`` (timm convention);
* optional layer-wise learning-rate decay (BEiT/MAE fine-tuning): the parameter in layer ``i`` of
  ``L`` gets ``lr * decay ** (L + 1 - i)``;
* a LambdaLR that is stepped every optimizer step: linear warmup from 0, then a half-cycle cosine
  to ``min_lr`` (MAE's ``adjust_learning_rate`` re-expressed as a multiplier on each group's lr).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from typing import Any

import torch
from torch import nn
from torch.optim.lr_scheduler import LambdaLR


def _fused_supported(params) -> bool:
    """True when every parameter is a floating tensor on one device type with a fused Adam kernel."""
    try:
        from torch.optim.optimizer import _get_fused_kernels_supported_devices

        supported = set(_get_fused_kernels_supported_devices())
    except ImportError:  # older torch: CUDA only
        supported = {"cuda"}
    tensors = [p for group in params for p in (group["params"] if isinstance(group, dict) else [group])]
    if not tensors:
        return False
    kinds = {t.device.type for t in tensors}
    return len(kinds) == 1 and kinds <= supported and all(t.is_floating_point() for t in tensors)


def make_adamw(params, betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-8,
               fused: bool | None = None, **kwargs: Any) -> torch.optim.AdamW:
    """``torch.optim.AdamW`` with the fused (single-kernel) implementation whenever it is available.

    ``fused=None`` (default) picks the fused kernel when all parameters sit on one device type that has
    it (CUDA, CPU, XPU, MPS ...): one launch for the whole update instead of a loop of ``foreach``
    kernels, and no host read of the step counter (the for-loop path reads a CPU step tensor with
    ``.item()`` every step). ``fused=False`` forces the ``foreach`` path. ``params`` may be parameter
    groups (lr / weight decay per group).
    """
    return FusedAdamW(params, betas=betas, eps=eps, fused=fused, **kwargs)


class FusedAdamW(torch.optim.AdamW):
    """``torch.optim.AdamW`` that takes the fused kernel wherever the parameters' device has one.

    For configs that name the optimizer class (``optimizer: {class_path: vitlab.core.optim.FusedAdamW}``):
    plain ``torch.optim.AdamW`` keeps the per-parameter loop on CPU and the multi-kernel ``foreach`` path on
    CUDA, and the loop reads each parameter's step counter on the host every step. ``fused=None`` (default)
    decides from the parameters (:func:`make_adamw`); ``True`` / ``False`` force it.
    """

    def __init__(self, params, lr: float = 1e-3, betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-8,
                 weight_decay: float = 1e-2, amsgrad: bool = False, fused: bool | None = None) -> None:
        params = list(params)
        if fused is None:
            fused = _fused_supported(params)
        super().__init__(params, lr=lr, betas=betas, eps=eps, weight_decay=weight_decay, amsgrad=amsgrad,
                         fused=bool(fused) or None)


def _no_weight_decay_names(module: nn.Module) -> set[str]:
    """Full parameter names listed by ``no_weight_decay()`` on ``module`` or any of its submodules."""
    names: set[str] = set()
    for prefix, sub in module.named_modules():
        fn = getattr(sub, "no_weight_decay", None)
        if callable(fn):
            for n in fn():
                names.add(f"{prefix}.{n}" if prefix else n)
    return names


def param_groups(
    module: nn.Module,
    lr: float,
    weight_decay: float,
    layer_decay: float | None = None,
    layer_id: Callable[[str], int] | None = None,
    num_layers: int | None = None,
    lr_scale: dict[str, float] | None = None,
    skip_names: Iterable[str] = (),
    decay_tokens: bool = False,
) -> list[dict[str, Any]]:
    """Split the trainable parameters of ``module`` into optimizer groups.

    Args:
        module: the module whose ``requires_grad`` parameters are optimised (frozen ones are skipped,
            so EMA teachers and frozen backbones never reach the optimizer).
        lr: base learning rate, written into every group (so optimizer defaults never leak in).
        weight_decay: applied to >= 2-D weights; 1-D tensors, biases and ``no_weight_decay()`` names get 0.
        layer_decay: if set, the lr of a parameter in layer ``i`` is ``lr * layer_decay ** (num_layers + 1 - i)``.
        layer_id: maps a full parameter name to its layer index in ``[0, num_layers + 1]``; required with
            ``layer_decay``.
        num_layers: number of transformer blocks (the deepest index is ``num_layers + 1``).
        lr_scale: multiplies the lr of parameters whose name starts with a key (e.g. ``{"head.": 10.0}``).
        skip_names: extra full names that get no weight decay.
        decay_tokens: ignore ``no_weight_decay()`` and decay tokens/position tables like other >= 2-D
            tensors (official MAE pre-training: timm ``add_weight_decay`` with an empty skip list).
    """
    if layer_decay is not None and (layer_id is None or num_layers is None):
        raise ValueError("param_groups: layer_decay needs both layer_id and num_layers")
    no_wd = (set() if decay_tokens else _no_weight_decay_names(module)) | set(skip_names)
    groups: dict[tuple[int, bool, float], dict[str, Any]] = {}
    for name, p in module.named_parameters():
        if not p.requires_grad:
            continue
        decay = not (p.ndim <= 1 or name.endswith(".bias") or name in no_wd)
        scale = 1.0
        layer = 0
        if layer_decay is not None:
            layer = layer_id(name)  # type: ignore[misc]
            scale = layer_decay ** (num_layers + 1 - layer)  # type: ignore[operator]
        for prefix, s in (lr_scale or {}).items():
            if name.startswith(prefix):
                scale *= s
        key = (layer, decay, scale)
        if key not in groups:
            groups[key] = {
                "params": [],
                "names": [],
                "lr": lr * scale,
                "weight_decay": weight_decay if decay else 0.0,
                "lr_scale": scale,
            }
        groups[key]["params"].append(p)
        groups[key]["names"].append(name)
    if not groups:
        raise ValueError(f"param_groups: {type(module).__name__} has no trainable parameters")
    return list(groups.values())


def warmup_cosine(total_steps: int, warmup_steps: int = 0, min_lr_ratio: float = 0.0) -> Callable[[int], float]:
    """Multiplier for LambdaLR: linear warmup from 0 over ``warmup_steps``, then half-cycle cosine to
    ``min_lr_ratio`` at ``total_steps``; constant ``min_lr_ratio`` afterwards.

    Step ``s`` gets exactly the official ``adjust_learning_rate`` value at the fractional epoch
    ``s / steps_per_epoch`` (MAE ``util/lr_sched.py``, CroCo the same): ``s / warmup_steps`` during warmup, so
    the very first optimizer step runs with lr 0.
    """
    total_steps = max(int(total_steps), 1)
    warmup_steps = min(max(int(warmup_steps), 0), total_steps)

    def fn(step: int) -> float:
        if step < warmup_steps:
            return step / warmup_steps  # official MAE/CroCo: lr = peak * step / warmup, so step 0 has lr 0
        span = max(total_steps - warmup_steps, 1)
        progress = min((step - warmup_steps) / span, 1.0)
        return min_lr_ratio + (1.0 - min_lr_ratio) * 0.5 * (1.0 + math.cos(math.pi * progress))

    return fn


def warmup_cosine_scheduler(
    optimizer, total_steps: int, warmup_steps: int = 0, lr: float = 1.0, min_lr: float = 0.0
) -> dict[str, Any]:
    """A Lightning ``lr_scheduler`` config stepping :func:`warmup_cosine` every optimizer step."""
    ratio = (min_lr / lr) if lr > 0 else 0.0
    sched = LambdaLR(optimizer, warmup_cosine(total_steps, warmup_steps, ratio))
    return {"scheduler": sched, "interval": "step", "frequency": 1}
