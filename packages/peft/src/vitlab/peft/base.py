"""Tuner base class and the three tuners that only choose what trains: linear probe, full fine-tune, BitFit.

Every tuner here follows one contract (the :class:`vitlab.core.Tuner` protocol): ``apply(backbone)``
freezes the whole backbone, adds its own modules (trainable) and unfreezes what the method trains, so
DDP runs without ``find_unused_parameters``. The original parameter count is remembered on the backbone
(``peft_base_parameters``) so the trainable share can be reported against the *pretrained* backbone, the
way PEFT papers quote it (e.g. iConFormer's "1.6-2.8 % of backbone parameters").
"""

from __future__ import annotations

import inspect
from typing import Any

from torch import nn

from vitlab.core.tuner import Tuner, count_parameters

BASE_COUNT_ATTR = "peft_base_parameters"
TUNER_ATTR = "peft_tuner"


def blocks_of(backbone: nn.Module) -> nn.ModuleList:
    """The transformer blocks of a vitlab ViT (or anything with a ``blocks`` ModuleList)."""
    blocks = getattr(backbone, "blocks", None)
    if not isinstance(blocks, nn.ModuleList):
        raise TypeError(f"{type(backbone).__name__} has no `blocks` ModuleList: PEFT tuners need a ViT-like backbone")
    return blocks


def select_blocks(backbone: nn.Module, layers: list[int] | None) -> list[tuple[int, nn.Module]]:
    """``(index, block)`` pairs for ``layers`` (None = all; negative indices count from the end)."""
    blocks = blocks_of(backbone)
    if layers is None:
        return list(enumerate(blocks))
    out = []
    for i in layers:
        j = i + len(blocks) if i < 0 else i
        if not 0 <= j < len(blocks):
            raise ValueError(f"layers: block index {i} out of range for {len(blocks)} blocks")
        out.append((j, blocks[j]))
    return out


class PeftTuner(Tuner):
    """Common part of the vitlab.peft tuners.

    Subclasses implement :meth:`_modify` (add modules, pick trainable tensors) on a backbone whose
    parameters are all frozen on entry. ``apply`` may be called once per backbone.

    Args:
        train_norms: also train every LayerNorm of the backbone (Houlsby adapters do; off by default).
    """

    def __init__(self, train_norms: bool = False) -> None:
        self.train_norms = train_norms

    # -- protocol ---------------------------------------------------------------------------------
    def apply(self, backbone: nn.Module) -> nn.Module:
        if getattr(backbone, TUNER_ATTR, None) is not None:
            raise RuntimeError(f"backbone already tuned by {getattr(backbone, TUNER_ATTR)!r}; apply one tuner per backbone")
        base = count_parameters(backbone)
        backbone.requires_grad_(False)
        self._modify(backbone)
        if self.train_norms:
            for m in backbone.modules():
                if isinstance(m, nn.LayerNorm):
                    m.requires_grad_(True)
        setattr(backbone, BASE_COUNT_ATTR, base)
        # a plain attribute, not a submodule: the tuner is configuration, not state
        object.__setattr__(backbone, TUNER_ATTR, self)
        if hasattr(backbone, "frozen"):
            backbone.frozen = False
        return backbone

    def _modify(self, backbone: nn.Module) -> None:
        raise NotImplementedError

    def trainable_parameters(self, backbone: nn.Module) -> dict[str, float]:
        """Core's counts (``trainable``, ``total``, ``percent`` of the tuned backbone) plus ``base`` (the
        pretrained backbone's own parameters), ``added`` (new tuner parameters) and ``percent_of_base``
        (trainable / base, the share PEFT papers report)."""
        stats: dict[str, float] = dict(super().trainable_parameters(backbone))
        base = int(getattr(backbone, BASE_COUNT_ATTR, stats["total"]))
        stats["base"] = base
        stats["added"] = int(stats["total"]) - base
        stats["percent_of_base"] = 100.0 * stats["trainable"] / max(base, 1)
        return stats

    def config(self) -> dict[str, Any]:
        """``{class_path, init_args}`` that rebuilds this tuner (stored in tuner checkpoints)."""
        params = inspect.signature(type(self).__init__).parameters
        init_args = {k: getattr(self, k) for k in params if k != "self" and hasattr(self, k)}
        return {"class_path": f"{type(self).__module__}.{type(self).__qualname__}", "init_args": init_args}


class LinearProbe(PeftTuner):
    """Freeze the whole backbone; only the task head trains (MAE's linear-probe protocol when combined
    with ``probe_batchnorm`` in :class:`vitlab.core.ImageClassification`)."""

    def __init__(self) -> None:
        super().__init__(train_norms=False)

    def _modify(self, backbone: nn.Module) -> None:
        pass


class FullFineTune(PeftTuner):
    """Train every backbone parameter (the reference every PEFT method is compared with).

    Fixed buffers (the sin-cos position table) stay buffers; learned tokens and position tables train.
    """

    def __init__(self) -> None:
        super().__init__(train_norms=False)

    def _modify(self, backbone: nn.Module) -> None:
        backbone.requires_grad_(True)


class BitFit(PeftTuner):
    """BitFit (Ben Zaken et al., ACL 2022): train only the bias terms of the backbone.

    Every parameter whose name ends in ``bias`` trains — qkv, proj, fc1, fc2, patch embedding and the
    LayerNorm shifts, as in the paper's "all bias terms".

    Args:
        train_norms: also train the LayerNorm scales (off: the paper trains biases only).
    """

    def __init__(self, train_norms: bool = False) -> None:
        super().__init__(train_norms=train_norms)

    def _modify(self, backbone: nn.Module) -> None:
        n = 0
        for name, p in backbone.named_parameters():
            if name.split(".")[-1] == "bias":
                p.requires_grad_(True)
                n += 1
        if n == 0:
            raise ValueError("BitFit: the backbone has no bias parameters")
