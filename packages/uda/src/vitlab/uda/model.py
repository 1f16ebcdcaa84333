"""Segmentation network, mean teacher, optimizer groups and schedule shared by the UDA methods."""

from __future__ import annotations

import copy
from collections.abc import Callable, Sequence
from typing import Any

import torch
from timm.layers import DropPath
from torch import Tensor, nn
from torch.nn.modules.dropout import _DropoutNd

from vitlab.core.ema import EMATeacher
from vitlab.core.heads import DAFormerHead

__all__ = ["FrozenEncoder", "MeanTeacher", "Segmentor", "daformer_param_groups", "poly_warmup"]

HEADS = ("daformer", "dpt")


def _feature_channels(backbone: nn.Module) -> list[int]:
    if hasattr(backbone, "out_channels"):
        return [int(c) for c in backbone.out_channels]
    if hasattr(backbone, "embed_dim") and hasattr(backbone, "out_indices"):
        return [int(backbone.embed_dim)] * len(backbone.out_indices)
    raise ValueError(f"Segmentor: cannot tell the feature channels of {type(backbone).__name__}; it needs "
                     "`out_channels` (MiT) or `embed_dim` + `out_indices` (ViT)")


class Segmentor(nn.Module):
    """Encoder + decode head; ``forward`` returns logits at the input resolution.

    Args:
        backbone: a multi-scale encoder with ``forward_intermediates(x) -> list of maps`` and ``out_channels``
            (:class:`vitlab.core.MiT`), or core's :class:`vitlab.core.ViT` (``embed_dim``, ``out_indices``).
        num_classes: output classes.
        head: ``"daformer"`` (:class:`vitlab.core.DAFormerHead`, any backbone) or ``"dpt"`` (core's DPT head,
            ViT backbones).
        head_kwargs: extra head arguments (``embed_dim`` of the DAFormer head, ``feature_dim`` of DPT, ...).
    """

    def __init__(self, backbone: nn.Module, num_classes: int, head: str = "daformer",
                 head_kwargs: dict[str, Any] | None = None) -> None:
        super().__init__()
        if head not in HEADS:
            raise ValueError(f"Segmentor: head must be one of {HEADS}, got {head!r}")
        self.backbone = backbone
        if head == "daformer":
            self.head = DAFormerHead(_feature_channels(backbone), num_classes, **(head_kwargs or {}))
        else:
            from vitlab.core.tasks import build_head

            self.head = build_head("dpt", backbone, num_classes, **(head_kwargs or {}))

    def extract(self, x: Tensor) -> list[Tensor]:
        return list(self.backbone.forward_intermediates(x))

    def decode(self, feats: Sequence[Tensor], size: Sequence[int]) -> Tensor:
        return self.head(feats, image_size=tuple(size))

    def forward(self, x: Tensor) -> Tensor:
        return self.decode(self.extract(x), x.shape[-2:])


class FrozenEncoder(nn.Module):
    """A frozen copy of an encoder, always in eval mode (DAFormer's ImageNet feature-distance model)."""

    def __init__(self, encoder: nn.Module) -> None:
        super().__init__()
        self.encoder = copy.deepcopy(encoder).requires_grad_(False).eval()

    def train(self, mode: bool = True) -> FrozenEncoder:
        super().train(False)
        return self

    @torch.no_grad()
    def forward(self, x: Tensor) -> list[Tensor]:
        return list(self.encoder.forward_intermediates(x))


def set_pseudo_label_mode(module: nn.Module, bn_train: bool = True) -> None:
    """DAFormer's teacher mode: train mode (BN uses batch statistics) with Dropout and DropPath off; with
    ``bn_train=False`` plain eval mode."""
    module.train(bn_train)
    if bn_train:
        for m in module.modules():
            if isinstance(m, (_DropoutNd, DropPath)):
                m.eval()


class MeanTeacher(EMATeacher):
    """:class:`vitlab.core.EMATeacher` with DAFormer's settings and a host-sync-free step.

    * ``alpha_t = min(1 - 1 / (t + 1), alpha)`` (core's ``"mean_teacher"`` schedule), so step 0 copies the
      student (DAFormer's ``_init_ema_weights``) and later steps average;
    * parameters only: buffers stay as they are (``buffers="keep"``: DAFormer's ``_update_ema`` loops over
      ``parameters()``);
    * during training the teacher is in train mode with Dropout/DropPath off (``bn_train=True``, DAFormer),
      or in eval mode (``bn_train=False``); for validation it is in eval mode;
    * :meth:`step` takes the trainer's ``global_step`` (a Python int) so no tensor is read on the host, and
      applies at most one update per optimizer step.
    """

    def __init__(self, student: nn.Module, alpha: float = 0.999, bn_train: bool = True) -> None:
        super().__init__(student, decay=alpha, schedule="mean_teacher", buffers="keep", train_mode=False)
        self.bn_train = bn_train
        self._next_step = 0  # Python mirror of num_updates (restored from the checkpoint buffer)

    def train(self, mode: bool = True) -> MeanTeacher:
        nn.Module.train(self, mode)
        if mode:
            set_pseudo_label_mode(self.teacher, self.bn_train)
        else:
            self.teacher.eval()
        return self

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs) -> None:
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)
        key = prefix + "num_updates"
        if key in state_dict:
            self._next_step = int(state_dict[key])

    def current_decay(self, step: int | None = None) -> float:
        return super().current_decay(self._next_step if step is None else step)

    def step(self, student: nn.Module, global_step: int) -> float | None:
        """Apply the update of optimizer step ``global_step`` once; returns the alpha used (None if done)."""
        if global_step < self._next_step:
            return None
        self._next_step = global_step
        decay = self.update(student)
        self._next_step = global_step + 1
        return decay


def daformer_param_groups(model: nn.Module, lr: float, weight_decay: float, head_lr_mult: float = 10.0,
                          head_prefix: str = "head.") -> list[dict[str, Any]]:
    """DAFormer's optimizer groups: decode head at ``lr * head_lr_mult``; weight decay 0 for parameters
    whose name contains ``norm`` or ``pos_block`` (mmcv ``custom_keys``), every other parameter decayed."""
    groups: dict[tuple[bool, bool], dict[str, Any]] = {}
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        is_head = name.startswith(head_prefix)
        no_wd = "norm" in name or "pos_block" in name
        key = (is_head, no_wd)
        if key not in groups:
            groups[key] = {"params": [], "names": [], "lr": lr * (head_lr_mult if is_head else 1.0),
                           "weight_decay": 0.0 if no_wd else weight_decay,
                           "lr_scale": head_lr_mult if is_head else 1.0}
        groups[key]["params"].append(p)
        groups[key]["names"].append(name)
    if not groups:
        raise ValueError(f"daformer_param_groups: {type(model).__name__} has no trainable parameters")
    return list(groups.values())


def poly_warmup(total_steps: int, warmup_steps: int = 1500, warmup_ratio: float = 1e-6, power: float = 1.0,
                min_lr_ratio: float = 0.0) -> Callable[[int], float]:
    """LambdaLR factor of mmcv's ``poly`` policy with linear warmup (by iteration).

    ``poly(t) = (1 - min_lr_ratio) * (1 - t / T) ** power + min_lr_ratio``; during warmup (t < W) it is
    multiplied by ``1 - (1 - t / W) * (1 - warmup_ratio)`` (mmcv ``get_warmup_lr``, linear).
    """
    total = max(int(total_steps), 1)

    def fn(step: int) -> float:
        progress = min(step, total)
        factor = (1.0 - min_lr_ratio) * (1.0 - progress / total) ** power + min_lr_ratio
        if step < warmup_steps:
            factor *= 1.0 - (1.0 - step / warmup_steps) * (1.0 - warmup_ratio)
        return factor

    return fn
