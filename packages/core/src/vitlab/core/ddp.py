"""What keeps DDP ranks identical, and what says which rank died.

Gradients are averaged over ranks, so parameters stay equal by themselves; three things do not:

* **Normalisation running statistics.** Each rank's BatchNorm sees its own batch, so ``running_mean`` /
  ``running_var`` drift apart (DDP re-broadcasts rank 0's buffers only at the start of a forward in automatic
  optimisation, never in manual optimisation), and the final weights, validation and checkpoints depend on
  the rank. :class:`RankGuard` averages them over the ranks after every training batch: for equal-sized
  per-rank batches the averaged ``running_mean`` is exactly the global batch's, and the averaged
  ``running_var`` is the mean of the per-rank variances, i.e. of the statistics each rank normalised with
  (rank 0's copy alone is neither). SyncBatchNorm is not used: torch refuses CPU tensors in it (no gloo
  runs), and it changes the training forward itself (one collective per BN layer per forward and
  backward); per-rank batch statistics are what the papers' single-GPU recipes (DAFormer, InvPT decoders)
  use. With ``--trainer.sync_batchnorm true`` on GPUs the averaging leaves the (already equal) statistics
  as they are.
* **Several backward passes per step that each reach part of the model** (manual optimisation with two
  networks, CLDA): DDP's reducer expects every backward to produce a gradient for every parameter and stops at
  the second one. :func:`local_backward` keeps the reducer out of a backward pass and
  :func:`all_reduce_gradients` averages the accumulated gradients once before an optimizer step, so no
  ``find_unused_parameters`` is needed (and a step costs one gradient all-reduce, not one per backward).
* **Statistics a method computes from its local batch** (CLDA's saliency): :func:`all_reduce_mean_` them.

:class:`RankGuard` is attached by :meth:`vitlab.core.tasks.base.VitlabModule.setup` (every vitlab module, any
Trainer) and by the CLI (any module). With one process every function here does nothing.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from typing import Any

import torch
import torch.distributed as dist
from lightning.pytorch import Callback, LightningModule, Trainer
from torch import Tensor, nn
from torch.nn.modules.batchnorm import _NormBase

__all__ = [
    "RankGuard",
    "all_reduce_gradients",
    "all_reduce_mean_",
    "attach_rank_guard",
    "local_backward",
    "norm_running_stats",
    "world_size",
]

#: flattened elements per collective (32 MB of fp32, like DDP's default bucket)
BUCKET_NUMEL = 1 << 23
#: text of the errors a collective raises when a peer process is gone (gloo, NCCL)
_PEER_LOST = ("connection reset", "connection closed", "broken pipe", "connection refused", "socket",
              "timed out", "timeout", "nccl")


def world_size() -> int:
    """Processes in the default group (1 without torch.distributed)."""
    return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1


def all_reduce_mean_(tensors: Iterable[Tensor]) -> None:
    """Replace every tensor by its mean over the ranks, in place, with one collective per dtype and bucket.

    Every rank must pass tensors of the same shapes in the same order.
    """
    n = world_size()
    if n == 1:
        return
    groups: dict[tuple[torch.device, torch.dtype], list[Tensor]] = {}
    for t in tensors:
        groups.setdefault((t.device, t.dtype), []).append(t)
    for group in groups.values():
        for bucket in _buckets(group):
            flat = torch.cat([t.detach().reshape(-1) for t in bucket])
            dist.all_reduce(flat, op=dist.ReduceOp.SUM)
            flat.div_(n)
            for t, part in zip(bucket, flat.split([t.numel() for t in bucket]), strict=True):
                t.detach().copy_(part.view_as(t))


def _buckets(tensors: list[Tensor]) -> Iterator[list[Tensor]]:
    bucket: list[Tensor] = []
    size = 0
    for t in tensors:
        if bucket and size + t.numel() > BUCKET_NUMEL:
            yield bucket
            bucket, size = [], 0
        bucket.append(t)
        size += t.numel()
    if bucket:
        yield bucket


def all_reduce_gradients(params: Iterable[nn.Parameter]) -> None:
    """Average ``.grad`` over the ranks for the parameters that have one (the others stay ``None``, so an
    optimizer still skips them).

    Which parameters have a gradient must be the same on every rank; it is when which losses run depends on
    the step and the config, not on the data. No host synchronisation.
    """
    if world_size() == 1:
        return
    all_reduce_mean_(p.grad for p in params if p.grad is not None)


@contextmanager
def local_backward(module: LightningModule) -> Iterator[None]:
    """Backward passes inside accumulate their gradients on this rank only (DDP's reducer stays out).

    For manual optimisation whose backward passes each reach only part of the model; call
    :func:`all_reduce_gradients` before the optimizer step.
    """
    trainer = module._trainer
    strategy = getattr(trainer, "strategy", None)
    if strategy is not None and hasattr(strategy, "block_backward_sync"):
        with strategy.block_backward_sync():
            yield
    else:
        yield


def norm_running_stats(module: nn.Module) -> list[Tensor]:
    """``running_mean`` and ``running_var`` of every BatchNorm-like layer (incl. InstanceNorm with tracked
    statistics, SyncBatchNorm, timm's BatchNormAct2d) in ``module``."""
    stats: list[Tensor] = []
    for m in module.modules():
        if isinstance(m, _NormBase) and m.track_running_stats and isinstance(m.running_mean, Tensor) \
                and not isinstance(m.running_mean, nn.parameter.UninitializedBuffer):
            stats += [m.running_mean, m.running_var]
    return stats


class RankGuard(Callback):
    """Keeps DDP ranks consistent and names a rank that died (nothing with one process).

    * After every training batch the normalisation running statistics are averaged over the ranks
      (:func:`norm_running_stats`), before checkpoints, validation or an EMA teacher read them.
    * When training fails, rank 0 says which of the processes it launched died and how (exit code or
      signal), instead of only gloo's "Connection reset by peer"; a process it launched says when rank 0 is
      gone. The line goes to stderr and is added to the exception's notes.

    Args:
        grace_s: how long rank 0 waits for a failing peer to exit before reporting (it usually already has).
    """

    def __init__(self, grace_s: float = 10.0) -> None:
        self.grace_s = grace_s
        self._stats: list[Tensor] | None = None
        self._stats_of: int | None = None
        self._parent_pid: int | None = None

    # -- ranks stay identical ----------------------------------------------------------------------------
    def setup(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        self.remember_launcher(trainer)

    def remember_launcher(self, trainer: Trainer) -> None:
        """On a process Lightning started for a local rank > 0: remember rank 0's pid (its parent)."""
        from lightning.fabric.plugins.environments import LightningEnvironment

        env = getattr(trainer.strategy, "cluster_environment", None)
        if trainer.world_size > 1 and trainer.local_rank > 0 and type(env) is LightningEnvironment:
            self._parent_pid = os.getppid()

    def acting(self, trainer: Trainer) -> bool:
        """Only the first RankGuard of a trainer acts, so a run has one whatever lists another (a config beside
        the CLI's, for a module that is no :class:`~vitlab.core.tasks.base.VitlabModule`)."""
        return next((c for c in trainer.callbacks if isinstance(c, RankGuard)), self) is self

    def on_train_batch_end(self, trainer: Trainer, pl_module: LightningModule, outputs: Any, batch: Any,
                           batch_idx: int) -> None:
        if world_size() == 1 or not self.acting(trainer):
            return
        if self._stats is None or self._stats_of != id(pl_module):
            self._stats, self._stats_of = norm_running_stats(pl_module), id(pl_module)
        all_reduce_mean_(self._stats)

    # -- a rank died -------------------------------------------------------------------------------------
    def on_exception(self, trainer: Trainer, pl_module: LightningModule, exception: BaseException) -> None:
        if trainer.world_size <= 1 or isinstance(exception, KeyboardInterrupt) or not self.acting(trainer):
            return
        message = self.describe_failure(trainer, exception)
        if message:
            sys.stderr.write(f"vitlab: {message}\n")
            sys.stderr.flush()
            if hasattr(exception, "add_note"):
                exception.add_note(f"vitlab: {message}")

    def describe_failure(self, trainer: Trainer, exception: BaseException) -> str | None:
        """One sentence naming the dead rank(s), or None when every peer this process knows is alive."""
        step = f"at step {trainer.global_step}"
        launcher = trainer.strategy.launcher
        procs: list[subprocess.Popen] = list(getattr(launcher, "procs", None) or [])
        if procs:
            wait = self.grace_s if _peer_lost(exception) else 0.0
            dead = _dead_children(procs, wait)
            if not dead:
                return None
            node = int(trainer.node_rank) * int(getattr(launcher, "num_processes", len(procs) + 1))
            parts = [f"rank {node + i + 1} (pid {p.pid}) {_how(p.returncode)}" for i, p in dead]
            return (f"{'; '.join(parts)} {step}; rank {trainer.global_rank} stopped because a peer is gone "
                    "(the collective error below is the consequence, look for the dead rank's own output above)")
        if self._parent_pid is not None and not _alive(self._parent_pid, os.getppid()):
            return (f"rank 0 (pid {self._parent_pid}, the process that launched this one) has exited {step}; "
                    f"rank {trainer.global_rank} stopped because its peer is gone (see rank 0's output above)")
        return None


def _peer_lost(exception: BaseException) -> bool:
    dist_error = getattr(dist, "DistError", ())
    text = str(exception).lower()
    return (bool(dist_error) and isinstance(exception, dist_error)) or any(s in text for s in _PEER_LOST)


def _dead_children(procs: list[subprocess.Popen], wait_s: float) -> list[tuple[int, subprocess.Popen]]:
    deadline = time.monotonic() + wait_s
    while True:
        dead = [(i, p) for i, p in enumerate(procs) if p.poll() not in (None, 0)]
        if dead or time.monotonic() >= deadline:
            return dead
        time.sleep(0.1)


def _how(returncode: int) -> str:
    if returncode < 0:
        try:
            name = signal.Signals(-returncode).name
        except ValueError:
            name = f"signal {-returncode}"
        hint = " (often the out-of-memory killer)" if -returncode == signal.SIGKILL else ""
        return f"was killed by {name}{hint}"
    return f"died with exit code {returncode}"


def _alive(pid: int, current_parent: int) -> bool:
    if current_parent != pid:  # re-parented: the launching process is gone
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def attach_rank_guard(trainer: Trainer) -> RankGuard:
    """Make sure ``trainer`` runs one :class:`RankGuard`, first among its callbacks (so the statistics are
    averaged before a checkpoint or an EMA update reads them); returns it."""
    guards = [c for c in trainer.callbacks if isinstance(c, RankGuard)]
    guard = guards[0] if guards else RankGuard()
    trainer.callbacks[:] = [guard] + [c for c in trainer.callbacks if not isinstance(c, RankGuard)]
    if not guards:
        guard.remember_launcher(trainer)  # its own setup hook has already run
    return guard
