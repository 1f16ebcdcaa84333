"""Fast-path settings for GPU runs and the counters that keep the training step free of host syncs.

* :func:`configure_cuda_fast_paths` turns on TF32 matmuls / convolutions on CUDA (the CLI calls it once
  before building the Trainer; it does nothing on a machine without CUDA);
* :class:`HostSyncCounter` counts ``aten._local_scalar_dense`` calls, which is what ``.item()``,
  ``int(t)``, ``float(t)``, ``bool(t)`` and a Python ``if`` on a tensor end in: on a GPU each one
  stalls the host until the device has caught up. Tests assert zero of them in a training step;
* :func:`compile_regions` compiles the transformer blocks, encoders and dense heads in place (``compile: true``),
  :func:`compiled_parameter_share` says how much of a model they cover;
* :func:`dynamo_counts` reads ``torch._dynamo``'s frame / graph-break counters.
"""

from __future__ import annotations

import inspect
import traceback
import types
from dataclasses import dataclass, field
from typing import Any

import torch
from timm.layers import DropPath, drop_path
from torch import nn
from torch.utils._python_dispatch import TorchDispatchMode

__all__ = ["configure_cuda_fast_paths", "compile_regions", "compiled_parameter_share", "is_region", "tensor_drop_path_rates",
           "TensorRateDropPath", "HostSyncCounter", "StepSyncCounter", "SyncEvent", "classify_sync", "dynamo_counts"]


def _region_types() -> tuple[type, ...]:
    """Third-party classes compiled as regions (vitlab's own classes set ``compile_region = True`` instead)."""
    from timm.models.hrnet import HighResolutionModule
    from timm.models.swin_transformer import SwinTransformerBlock, SwinTransformerStage
    from timm.models.vision_transformer import Block

    from vitlab.core.backbones.decoder import CrossBlock
    from vitlab.core.heads.dpt import DPTHead

    return (Block, CrossBlock, DPTHead, SwinTransformerStage, SwinTransformerBlock, HighResolutionModule)


def is_region(module: nn.Module) -> bool:
    """Whether :func:`compile_regions` compiles ``module`` (unless it lies inside another region)."""
    return isinstance(module, _region_types()) or bool(getattr(type(module), "compile_region", False))


#: graphs one region class may compile before dynamo runs it eager (see :func:`compile_regions`)
REGION_RECOMPILE_LIMIT = 32


def compile_regions(module: nn.Module, **options: Any) -> list[str]:
    """``torch.compile`` in place the regions that carry the FLOPs: every transformer block and dense head.

    Regional compilation (the pattern PyTorch recommends for repeated blocks): each timm ``Block`` (the
    ViT's, :class:`~vitlab.core.backbones.vit.RoPEBlock`, the MAE decoder's), each CroCo
    :class:`~vitlab.core.backbones.CrossBlock`, each :class:`~vitlab.core.DPTHead`, timm's Swin stages and
    blocks and HRNet stage modules, and any module whose class sets ``compile_region = True`` (MiT blocks, Swin / HRNet encoders whose
    blocks are not called as modules, the MTL and DAFormer heads ...), is compiled in place, as
    ``nn.Module.compile`` does (state-dict keys keep their names), but behind a code object per class
    (:func:`_region_call`: dynamo's recompile limit then holds per region class, not for all together). Whatever calls the block — ``forward``,
    ``forward_intermediates``, a method's own encoder loop, an EMA teacher — then runs the compiled code;
    blocks of one class share one graph (parameters are graph inputs), so a 12-block encoder compiles once.
    Descendants of a compiled region are not compiled again. Stochastic depth inside the regions gets its
    rate as a tensor (:func:`tensor_drop_path_rates`), so blocks that differ only in their rate share a graph
    too. Returns the names of the compiled modules.

    Each region class may compile up to :data:`REGION_RECOMPILE_LIMIT` graphs (dynamo's default is 8 per code
    object): one per stage width (parameter shapes are static), grad mode (an EMA teacher under ``no_grad``) and
    train / eval / teacher mode is legitimate, and MiT's four stages under a UDA student, teacher and frozen
    ImageNet encoder already need more than eight. Pass ``recompile_limit`` to change it.

    Args:
        module: the LightningModule (or any module) to walk.
        **options: ``torch.compile`` options (``mode``, ``backend``, ``dynamic``, ``fullgraph``,
            ``recompile_limit`` ...).
    """
    if "recompile_limit" in inspect.signature(torch.compile).parameters:
        options.setdefault("recompile_limit", REGION_RECOMPILE_LIMIT)
    done: list[str] = []
    for name, sub in module.named_modules():
        if any(d == "" or name.startswith(d + ".") for d in done):
            continue  # inside a region compiled already
        if is_region(sub):
            tensor_drop_path_rates(sub)
            sub._compiled_call_impl = torch.compile(_region_call(type(sub)).__get__(sub), **options)
            done.append(name)
    return done


def _call(self, *args, **kwargs):
    return self._call_impl(*args, **kwargs)


_REGION_CALLS: dict[type, Any] = {}


def _region_call(cls: type) -> Any:
    """``Module._call_impl`` behind a code object of ``cls``'s own.

    dynamo keeps its compiled graphs, and its recompile limit (8), per code object. ``nn.Module.compile``
    compiles ``Module._call_impl``, one code object for every module of the process: the regions of all classes
    (blocks, heads, train / eval mode, teacher under ``no_grad``) would share eight graphs and the rest run
    eager without a word. One code object per region class gives each class its own limit.
    """
    fn = _REGION_CALLS.get(cls)
    if fn is None:
        name = f"_call_{cls.__name__}"
        code = _call.__code__.replace(co_name=name, co_qualname=f"{cls.__qualname__}.{name}")
        fn = _REGION_CALLS[cls] = types.FunctionType(code, _call.__globals__, name)
    return fn


def compiled_parameter_share(module: nn.Module) -> float:
    """Share of ``module``'s parameters (trainable and frozen, each counted once) inside a compiled module.

    What a regional compile leaves eager (stems, norms, small heads) runs op by op; a low share says the
    regions miss where the parameters — and most FLOPs — are.
    """
    total = {id(p): p.numel() for p in module.parameters()}
    inside: set[int] = set()
    for sub in module.modules():
        if getattr(sub, "_compiled_call_impl", None) is not None:
            inside.update(id(p) for p in sub.parameters())
    return sum(total[i] for i in inside if i in total) / max(1, sum(total.values()))


class TensorRateDropPath(DropPath):
    """timm's ``DropPath`` with its rate also held as a 0-d buffer, which the compiled graph reads.

    dynamo specialises on a Python float attribute: blocks whose stochastic-depth rates differ (a linear
    schedule) would each compile their own graph, and a 12-block encoder exceeds the recompile limit, so its
    last blocks silently run eager. Traced, the rate is a graph input; eager, the float path is timm's own
    (same random numbers). The buffer is not persistent: state-dict keys are unchanged. Setting ``drop_prob``
    updates both.
    """

    def __init__(self, drop_prob: float = 0.0, scale_by_keep: bool = True) -> None:
        nn.Module.__init__(self)
        self.register_buffer("drop_rate", torch.tensor(float(drop_prob)), persistent=False)
        self.drop_prob = drop_prob
        self.scale_by_keep = scale_by_keep

    @property
    def drop_prob(self) -> float:
        return self._drop_prob

    @drop_prob.setter
    def drop_prob(self, value: float) -> None:
        self._drop_prob = float(value)
        if "drop_rate" in self._buffers:
            self.drop_rate.fill_(self._drop_prob)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not torch.compiler.is_compiling():
            return drop_path(x, self._drop_prob, self.training, self.scale_by_keep)
        if not self.training:
            return x
        keep = 1.0 - self.drop_rate
        shape = (x.shape[0],) + (1,) * (x.ndim - 1)
        mask = x.new_empty(shape).bernoulli_(keep.expand(shape))
        if self.scale_by_keep:
            mask = mask / keep.clamp(min=1e-12)  # a rate of 1 leaves an all-zero mask: zero, as timm's
        return x * mask


def tensor_drop_path_rates(module: nn.Module) -> int:
    """Turn every timm ``DropPath`` under ``module`` into a :class:`TensorRateDropPath` in place (the same
    object: references and ``isinstance(m, DropPath)`` still hold). Returns how many were changed."""
    n = 0
    device = next((p.device for p in module.parameters()), torch.device("cpu"))
    for m in module.modules():
        if type(m) is DropPath:
            rate = float(m.__dict__.pop("drop_prob"))
            m.__class__ = TensorRateDropPath
            m.register_buffer("drop_rate", torch.tensor(rate, device=device), persistent=False)
            m.drop_prob = rate
            n += 1
    return n


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


#: Ops that hand a device value to the host (a read: the host waits for the device).
_READ_OPS = frozenset({"_local_scalar_dense", "item", "is_nonzero", "equal"})
#: Ops whose output size depends on the data: the host must learn it before it can go on.
_IMPLICIT_OPS = frozenset({"nonzero", "nonzero_numpy", "_unique", "_unique2", "unique_dim", "unique_consecutive",
                           "unique_dim_consecutive", "bincount", "masked_select", "histogram"})
_INDEX_OPS = frozenset({"index", "index_put", "index_put_", "_index_put_impl_", "_unsafe_index"})


def _is_mask(t: Any) -> bool:
    return isinstance(t, torch.Tensor) and t.dtype in (torch.bool, torch.uint8)


def _device(x: Any) -> torch.device | None:
    if isinstance(x, torch.Tensor):
        return x.device
    if x is None:
        return None
    return torch.device(x)


def classify_sync(func: Any, args: tuple, kwargs: dict) -> str | None:
    """The kind of host sync an aten call makes, or None: ``"read"``, ``"implicit"``, ``"h2d"``, ``"host_data"``.

    * ``read``: a value or a tensor goes to the host (``.item()``, ``float(t)``, ``bool(t)``, ``if t:``,
      ``torch.equal``, a blocking device→host ``.cpu()`` / ``.to("cpu")``);
    * ``implicit``: the output shape depends on the data (``nonzero``, boolean-mask indexing and assignment,
      ``unique``, ``bincount``, ``masked_select``, ``repeat_interleave`` without ``output_size``);
    * ``h2d``: a blocking host→device copy (``.to(device)`` / ``copy_`` from a CPU tensor, ``non_blocking``
      False): the host waits until the copy is done;
    * ``host_data``: a tensor made from Python data (``torch.tensor([...], device=...)``,
      ``torch.as_tensor(list)``). On a GPU it is a pageable host→device copy that blocks; on a CPU-only run
      nothing is copied, so counting it is how a CPU test sees the copies a GPU run would make.
    """
    name = func._overloadpacket.__name__ if hasattr(func, "_overloadpacket") else str(func)
    if name in _READ_OPS:
        return "read"
    if name in _IMPLICIT_OPS:
        return "implicit"
    if name == "repeat_interleave" and kwargs.get("output_size") is None and len(args) < 4 \
            and isinstance(args[0], torch.Tensor) and (len(args) < 2 or isinstance(args[1], torch.Tensor)):
        return "implicit"
    if name in _INDEX_OPS and len(args) > 1 and isinstance(args[1], (list, tuple)) \
            and any(_is_mask(i) for i in args[1]):
        return "implicit"
    if name == "lift_fresh":
        return "host_data"
    if name == "_to_copy" and isinstance(args[0], torch.Tensor):
        dst = _device(kwargs.get("device")) or args[0].device
        return _copy_kind(args[0].device, dst, bool(kwargs.get("non_blocking", False)))
    if name == "copy_" and len(args) > 1 and isinstance(args[1], torch.Tensor):
        non_blocking = bool(args[2] if len(args) > 2 else kwargs.get("non_blocking", False))
        return _copy_kind(args[1].device, args[0].device, non_blocking)
    return None


def _copy_kind(src: torch.device, dst: torch.device, non_blocking: bool) -> str | None:
    if src.type == dst.type or non_blocking or "meta" in (src.type, dst.type):
        return None
    if src.type == "cpu":
        return "h2d"
    return "read" if dst.type == "cpu" else None


@dataclass
class SyncEvent:
    """One host sync: the op, its kind (see :func:`classify_sync`), the device and where in Python it was
    requested (innermost frame last)."""

    device: str
    stack: list[str] = field(default_factory=list)
    op: str = "_local_scalar_dense"
    kind: str = "read"

    def where(self, frames: int = 4) -> str:
        """The innermost ``frames`` frames outside torch and Lightning (where the code to change is)."""
        own = [f for f in self.stack if not any(s in f for s in _LIBRARY_PARTS)] or self.stack
        return " <- ".join(reversed(own[-frames:]))


_LIBRARY_PARTS = ("/torch/", "/lightning/", "/lightning_fabric/", "/torchmetrics/", "<frozen")
_TENSOR_READS = ("tolist", "numpy")  # read the data directly: no aten op the dispatch mode could see on CPU
_patched: list[int] = [0]
_originals: dict[str, Any] = {}
_active: list[HostSyncCounter] = []


def _patch_tensor_reads() -> None:
    if _patched[0] == 0:
        for name in _TENSOR_READS:
            original = getattr(torch.Tensor, name)
            _originals[name] = original

            def read(self, *a, __original=original, __name=name, **k):
                for counter in list(_active):
                    counter._record(f"Tensor.{__name}", "read", self)
                return __original(self, *a, **k)

            setattr(torch.Tensor, name, read)
    _patched[0] += 1


def _unpatch_tensor_reads() -> None:
    _patched[0] -= 1
    if _patched[0] == 0:
        for name, original in _originals.items():
            setattr(torch.Tensor, name, original)
        _originals.clear()


class HostSyncCounter(TorchDispatchMode):
    """Context manager counting the host syncs made inside it, of every kind :func:`classify_sync` names.

    ``with HostSyncCounter() as c: ...``; then ``c.count``, ``c.by_kind()`` and ``c.events`` (op, kind, device
    and Python stack of each, for an error message that points at the line). It sees reads (``.item()``,
    ``float``/``int``/``bool`` of a tensor, ``if t:``, ``.tolist()``, ``.numpy()``, device→host copies), implicit
    syncs (``nonzero``, mask indexing, ``unique``, ``bincount`` ...), blocking host→device copies and tensors
    made from Python data, also under ``torch.inference_mode`` (where ``.item()`` reaches the mode as
    ``aten.item``). Nesting-safe; ``pause()`` / ``resume()`` leave work out (a DataLoader fetch); enter/exit
    may be called from two different Lightning hooks of the same thread.

    Args:
        capture_stack: keep the Python stack of each event (slower; for the message).
        kinds: the kinds to count (default: all four).
    """

    KINDS = ("read", "implicit", "h2d", "host_data")

    def __init__(self, capture_stack: bool = True, kinds: tuple[str, ...] | None = None) -> None:
        super().__init__()
        self.capture_stack = capture_stack
        self.kinds = frozenset(kinds or self.KINDS)
        self.events: list[SyncEvent] = []
        self._paused = 0

    @property
    def count(self) -> int:
        return len(self.events)

    def by_kind(self) -> dict[str, int]:
        out = dict.fromkeys(sorted(self.kinds), 0)
        for e in self.events:
            out[e.kind] += 1
        return out

    def pause(self) -> None:
        self._paused += 1

    def resume(self) -> None:
        self._paused = max(0, self._paused - 1)

    def __enter__(self):
        _patch_tensor_reads()
        _active.append(self)
        return super().__enter__()

    def __exit__(self, *exc):
        if self in _active:
            _active.remove(self)
            _unpatch_tensor_reads()
        return super().__exit__(*exc)

    def _record(self, op: str, kind: str, tensor: Any) -> None:
        if self._paused or kind not in self.kinds:
            return
        stack = []
        if self.capture_stack:
            stack = [f"{f.filename}:{f.lineno} {f.name}: {(f.line or '').strip()}"
                     for f in traceback.extract_stack()[:-2]
                     if "torch/utils/_python_dispatch" not in f.filename and f.filename != __file__]
        self.events.append(SyncEvent(str(getattr(tensor, "device", "?")), stack, op, kind))

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        kind = classify_sync(func, args, kwargs)
        if kind is not None:
            first = args[0] if args else None
            self._record(str(func), kind, first)
        return func(*args, **kwargs)

    def report(self) -> str:
        return "\n".join(f"[{e.kind} {e.op} {e.device}] {e.where()}" for e in self.events)


def dynamo_counts() -> dict[str, int]:
    """``{"frames": compiled frames, "graph_breaks": total graph breaks, "unique_breaks": distinct reasons}``."""
    from torch._dynamo.utils import counters

    return {
        "frames": int(counters["stats"]["unique_graphs"]),
        "graph_breaks": int(sum(counters["graph_break"].values())),
        "unique_breaks": len(counters["graph_break"]),
    }


def _lightning_callback_base() -> type:
    from lightning.pytorch import Callback

    return Callback


class StepSyncCounter(_lightning_callback_base()):
    """Counts the host syncs of every training step of a fit with :class:`HostSyncCounter`.

    A step's window opens once its batch has been fetched (the DataLoader's own work is left out: in a real
    run workers do it) and closes when the next fetch starts, or at validation, epoch end or training end,
    whichever comes first. So it holds the batch transfer and ``on_after_batch_transfer`` (normalisation),
    ``training_step``, backward, optimizer and scheduler steps, EMA updates and every callback's and
    Lightning's per-step bookkeeping. Steps before ``first_step`` (lazy optimizer state, first-call caches)
    are not counted. ``per_step`` maps the global step to its counter; :meth:`is_log_step` says whether that
    step logs (``(step + 1) % log_every_n_steps == 0``) or writes a step-based checkpoint, where reading the
    logged values is a sync by design.

    Add it to a run with ``--trainer.callbacks+=vitlab.core.perf.StepSyncCounter``.

    Args:
        first_step: first global step counted (default 1).
        capture_stack: keep each event's Python stack (for the message naming the line).
    """

    def __init__(self, first_step: int = 1, capture_stack: bool = True) -> None:
        self.first_step = first_step
        self.capture_stack = capture_stack
        self.per_step: dict[int, HostSyncCounter] = {}
        self.log_steps: set[int] = set()
        self._open: HostSyncCounter | None = None
        self._trainer = None

    # -- window ------------------------------------------------------------------------------------
    def _close(self) -> None:
        if self._open is not None:
            self._open.__exit__(None, None, None)
            self._open = None

    def _after_fetch(self) -> None:
        trainer = self._trainer
        if trainer is None or not trainer.training or trainer.sanity_checking:
            return
        self._close()
        step = trainer.global_step
        if step >= self.first_step and step not in self.per_step:
            if self.is_log_step(trainer, step):
                self.log_steps.add(step)
            self._open = HostSyncCounter(capture_stack=self.capture_stack)
            self.per_step[step] = self._open
            self._open.__enter__()

    def _before_fetch(self) -> None:
        self._close()

    @staticmethod
    def is_log_step(trainer, step: int) -> bool:
        every = max(1, int(trainer.log_every_n_steps or 50))
        if (step + 1) % every == 0:
            return True
        return any((getattr(cb, "_every_n_train_steps", 0) or 0) and (step + 1) % cb._every_n_train_steps == 0
                   for cb in trainer.checkpoint_callbacks)

    # -- hooks -------------------------------------------------------------------------------------
    def on_train_start(self, trainer, pl_module) -> None:
        self._trainer = trainer
        loop = trainer.fit_loop.epoch_loop
        before, after = loop._on_before_fetch, loop._on_after_fetch

        def on_before_fetch() -> None:
            self._before_fetch()
            before()

        def on_after_fetch() -> None:
            after()
            self._after_fetch()

        loop._on_before_fetch, loop._on_after_fetch = on_before_fetch, on_after_fetch
        fetcher = trainer.fit_loop._data_fetcher  # the first epoch's fetcher was wired before this hook
        if fetcher is not None:
            fetcher._start_profiler, fetcher._stop_profiler = on_before_fetch, on_after_fetch
        val_run = loop.val_loop.run

        def run_validation(*args, **kwargs):  # closes before the loop builds its DataLoader iterator
            self._close()
            return val_run(*args, **kwargs)

        loop.val_loop.run = run_validation

    def on_validation_start(self, trainer, pl_module) -> None:
        self._close()

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        self._close()

    def on_train_end(self, trainer, pl_module) -> None:
        self._close()
        loop = trainer.fit_loop.epoch_loop
        for name in ("_on_before_fetch", "_on_after_fetch"):
            loop.__dict__.pop(name, None)
        loop.val_loop.__dict__.pop("run", None)
        self._trainer = None

    def on_exception(self, trainer, pl_module, exception) -> None:
        self._close()

    # -- results -----------------------------------------------------------------------------------
    def steady(self) -> dict[int, HostSyncCounter]:
        """The counted steps that neither log nor checkpoint."""
        return {s: c for s, c in self.per_step.items() if s not in self.log_steps}

    def summary(self) -> dict[str, Any]:
        steady = self.steady()
        return {"steps": sorted(self.per_step), "log_steps": sorted(self.log_steps),
                "steady_max": max((c.count for c in steady.values()), default=0),
                "log_max": max((self.per_step[s].count for s in self.log_steps), default=0)}
