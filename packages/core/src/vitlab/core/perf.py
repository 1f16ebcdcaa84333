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

import torch
from torch.utils._python_dispatch import TorchDispatchMode

__all__ = ["configure_cuda_fast_paths", "HostSyncCounter", "SyncEvent", "dynamo_counts"]


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
