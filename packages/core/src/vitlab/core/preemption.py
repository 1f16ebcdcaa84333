"""Preemption: a SIGTERM'd ``vitlab fit`` keeps its progress in ``last.ckpt`` and exits non-zero.

Lightning 2.6 already catches SIGTERM (its signal connector sets ``trainer.received_sigterm``, forwards the
signal to DDP children and, under DDP, broadcasts it so every rank stops at the same batch); its loops
then raise ``SIGTERMException`` -- a ``SystemExit`` with no code, so the process would exit 0 -- after the
current batch, and call every callback's ``on_exception`` first. :class:`PreemptionCheckpoint` builds on
that hook: it writes ``last.ckpt`` of the current step through each vitlab
:class:`~vitlab.core.callbacks.ModelCheckpoint` (so through the trainer's atomic checkpoint IO) and,
under SLURM, requeues the job with ``scontrol requeue`` as Lightning's SLURM plugin does on its requeue
signal. The CLI adds it to every ``fit`` and turns the exception into exit status 143 (128 + SIGTERM,
what a shell reports for a process the signal ended).
"""

from __future__ import annotations

import logging
import os
import re
import signal
import subprocess
from typing import Any

from lightning.fabric.plugins.environments import SLURMEnvironment
from lightning.pytorch import Callback, LightningModule, Trainer
from lightning.pytorch.utilities.exceptions import SIGTERMException
from lightning.pytorch.utilities.rank_zero import rank_zero_info, rank_zero_warn

__all__ = ["PREEMPTED_EXIT_CODE", "PreemptionCheckpoint", "SIGTERMException", "slurm_job_id"]

log = logging.getLogger("vitlab")

#: exit status of a fit stopped by SIGTERM (128 + the signal number, as a shell reports a killed process)
PREEMPTED_EXIT_CODE = 128 + int(signal.SIGTERM)


def slurm_job_id(env: dict[str, str] | None = None) -> str | None:
    """The id ``scontrol requeue`` takes for this job (``<array job>_<task>`` for an array task), or None."""
    env = os.environ if env is None else env
    array, task = env.get("SLURM_ARRAY_JOB_ID"), env.get("SLURM_ARRAY_TASK_ID")
    job = f"{array}_{task}" if array and task else env.get("SLURM_JOB_ID")
    return job if job and re.fullmatch(r"[0-9_]+", job) else None


class PreemptionCheckpoint(Callback):
    """On SIGTERM during ``fit``: write ``last.ckpt`` of the current step, then requeue a SLURM job.

    After the run stops, :attr:`saved` holds the checkpoint paths written (or already current) and
    :attr:`requeued` the SLURM job id that ``scontrol requeue`` accepted. Requeueing is skipped when Lightning's
    ``SLURMEnvironment(auto_requeue=False)`` is the trainer's cluster environment.
    """

    def __init__(self) -> None:
        self.saved: list[str] = []
        self.requeued: str | None = None
        self.step: int | None = None

    def on_exception(self, trainer: Trainer, pl_module: LightningModule, exception: BaseException) -> None:
        if not isinstance(exception, SIGTERMException) and not trainer.received_sigterm:
            return
        from vitlab.core.callbacks import ModelCheckpoint

        self.step = trainer.global_step
        for cb in trainer.checkpoint_callbacks:
            if isinstance(cb, ModelCheckpoint):
                path = cb.save_last_now(trainer)  # every rank: saving synchronises them
                if path:
                    self.saved.append(path)
        if trainer.is_global_zero:
            rank_zero_info(f"vitlab: SIGTERM at global step {trainer.global_step}: "
                           + (f"saved {', '.join(self.saved)}" if self.saved else "no checkpoint callback saves last"))
            self._requeue(trainer)

    def _requeue(self, trainer: Trainer) -> None:
        job = slurm_job_id()
        if job is None:
            return
        env = trainer._accelerator_connector.cluster_environment
        if isinstance(env, SLURMEnvironment) and not env.auto_requeue:
            return
        try:
            result = subprocess.run(["scontrol", "requeue", job], capture_output=True, text=True, timeout=60)
        except (OSError, subprocess.TimeoutExpired) as err:
            rank_zero_warn(f"vitlab: could not requeue SLURM job {job}: `scontrol requeue {job}` failed ({err})")
            return
        if result.returncode == 0:
            self.requeued = job
            rank_zero_info(f"vitlab: requeued SLURM job {job}")
        else:
            why = (result.stderr or result.stdout).strip() or f"exit status {result.returncode}"
            rank_zero_warn(f"vitlab: `scontrol requeue {job}` failed: {why}")

    def summary(self, run_dir: Any = None) -> str:
        """The one line the CLI prints when the run stopped: what was saved, how to resume, whether requeued."""
        where = f"; resume: --ckpt_path {run_dir}" if run_dir is not None and self.saved else ""
        saved = f"last.ckpt holds it ({self.saved[0]}){where}" if self.saved else "no last.ckpt was written"
        queued = f"; SLURM job {self.requeued} requeued" if self.requeued else ""
        return f"vitlab: fit stopped by SIGTERM at global step {self.step}: {saved}{queued}"
