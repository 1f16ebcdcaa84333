"""Fast-path settings for GPU runs and the counters that keep the training step free of host syncs.

* :func:`configure_cuda_fast_paths` turns on TF32 matmuls / convolutions on CUDA (the CLI calls it once
  before building the Trainer; it does nothing on a machine without CUDA);
* :class:`HostSyncCounter` counts ``aten._local_scalar_dense`` calls, which is what ``.item()``,
  ``int(t)``, ``float(t)``, ``bool(t)`` and a Python ``if`` on a tensor end in: on a GPU each one
  stalls the host until the device has caught up. Tests assert zero of them in a training step;
* :func:`dynamo_counts` reads ``torch._dynamo``'s frame / graph-break counters.
"""

from __future__ import annotations

import traceback
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn
from torch.utils._python_dispatch import TorchDispatchMode

__all__ = ["configure_cuda_fast_paths", "compile_regions", "HostSyncCounter", "SyncEvent", "dynamo_counts"]


def _region_types() -> tuple[type, ...]:
    from timm.models.vision_transformer import Block

    from vitlab.core.backbones.decoder import CrossBlock
    from vitlab.core.heads.dpt import DPTHead

    return (Block, CrossBlock, DPTHead)


def compile_regions(module: nn.Module, **options: Any) -> list[str]:
    """``torch.compile`` in place the regions that carry the FLOPs: every transformer block and dense head.

    Regional compilation (the pattern PyTorch recommends for repeated blocks): each timm ``Block`` (the
    ViT's, :class:`~vitlab.core.backbones.vit.RoPEBlock`, the MAE decoder's), each CroCo
    :class:`~vitlab.core.backbones.CrossBlock`, each :class:`~vitlab.core.DPTHead`, and any module whose
    class sets ``compile_region = True``, is compiled with ``nn.Module.compile`` (in place: state-dict keys
    keep their names). Whatever calls the block — ``forward``, ``forward_intermediates``, a method's own
    encoder loop, an EMA teacher — then runs the compiled code; blocks of one class share one graph
    (parameters are graph inputs), so a 12-block encoder compiles once. Descendants of a compiled region
    are not compiled again. Returns the names of the compiled modules.

    Args:
        module: the LightningModule (or any module) to walk.
        **options: ``torch.compile`` options (``mode``, ``backend``, ``dynamic``, ``fullgraph`` ...).
    """
    types = _region_types()
    done: list[str] = []
    for name, sub in module.named_modules():
        if any(d == "" or name.startswith(d + ".") for d in done):
            continue  # inside a region compiled already
        if isinstance(sub, types) or getattr(type(sub), "compile_region", False):
            sub.compile(**options)
            done.append(name)
    return done


def configure_cuda_fast_paths(matmul_precision: str = "high") -> bool:
    """Use TF32 tensor cores for fp32 matmuls and convolutions when CUDA is available.

    ``torch.set_float32_matmul_precision("high")`` lets fp32 matmuls (the parts of a bf16-mixed step
    that autocast leaves in fp32, and every matmul of a ``32-true`` run) use TF32; cuDNN convolutions
    get the same switch. Returns True when CUDA was found and the settings were applied.

    Args:
        matmul_precision: ``"highest"`` (full fp32), ``"high"`` (TF32, default) or ``"medium"`` (bf16).
    """
    if matmul_precision not in ("highest", "high", "medium"):
        raise ValueError(f"matmul_precision must be 'highest', 'high' or 'medium', got {matmul_precision!r}")
    if not torch.cuda.is_available():
        return False
    torch.set_float32_matmul_precision(matmul_precision)
    torch.backends.cudnn.allow_tf32 = matmul_precision != "highest"
    torch.backends.cudnn.benchmark = True
    return True


@dataclass
class SyncEvent:
    """One host sync: the tensor's device and where in Python it was requested (innermost frame last)."""

    device: str
    stack: list[str] = field(default_factory=list)

    def where(self) -> str:
        return " <- ".join(reversed(self.stack[-4:]))


class HostSyncCounter(TorchDispatchMode):
    """Context manager counting host syncs (``aten._local_scalar_dense``) made inside it.

    ``with HostSyncCounter() as c: ...``; then ``c.count`` and ``c.events`` (device + Python stack of
    each sync, for an error message that points at the line). Nesting-safe and cheap enough for a test;
    enter/exit may also be called from two different Lightning hooks of the same thread.
    """

    def __init__(self, capture_stack: bool = True) -> None:
        super().__init__()
        self.capture_stack = capture_stack
        self.events: list[SyncEvent] = []

    @property
    def count(self) -> int:
        return len(self.events)

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        if func is torch.ops.aten._local_scalar_dense.default:
            t = args[0]
            stack = []
            if self.capture_stack:
                stack = [f"{f.filename}:{f.lineno} {f.name}: {(f.line or '').strip()}"
                         for f in traceback.extract_stack()[:-1]
                         if "torch/utils/_python_dispatch" not in f.filename]
            self.events.append(SyncEvent(str(getattr(t, "device", "?")), stack))
        return func(*args, **(kwargs or {}))

    def report(self) -> str:
        return "\n".join(f"[{e.device}] {e.where()}" for e in self.events)


def dynamo_counts() -> dict[str, int]:
    """``{"frames": compiled frames, "graph_breaks": total graph breaks, "unique_breaks": distinct reasons}``."""
    from torch._dynamo.utils import counters

    return {
        "frames": int(counters["stats"]["unique_graphs"]),
        "graph_breaks": int(sum(counters["graph_break"].values())),
        "unique_breaks": len(counters["graph_break"]),
    }
