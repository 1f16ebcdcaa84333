"""The tuner protocol: how a task module lets something else decide what of its backbone trains.

Core never imports ``vitlab.peft``; a task module only calls ``tuner.apply(backbone)``. Tuners subclass
:class:`Tuner` so that LightningCLI can resolve them by class path or short name
(``tuner: {class_path: LoRA, init_args: {rank: 8}}``).
"""

from __future__ import annotations

from abc import ABC, abstractmethod

from torch import nn


def count_parameters(module: nn.Module, trainable_only: bool = False) -> int:
    return sum(p.numel() for p in module.parameters() if p.requires_grad or not trainable_only)


class Tuner(ABC):
    """Changes a backbone in place (adds modules, freezes weights) and returns it.

    Subclasses implement :meth:`apply`; they must freeze (``requires_grad_(False)``) what they do not
    train, so DDP runs without ``find_unused_parameters``.
    """

    @abstractmethod
    def apply(self, backbone: nn.Module) -> nn.Module: ...

    def trainable_parameters(self, backbone: nn.Module) -> dict[str, float]:
        """Trainable parameter count of the tuned backbone and its share of all its parameters."""
        total = count_parameters(backbone)
        trainable = count_parameters(backbone, trainable_only=True)
        return {"trainable": trainable, "total": total, "percent": 100.0 * trainable / max(total, 1)}

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in vars(self).items() if not k.startswith("_"))
        return f"{type(self).__name__}({args})"
