"""Callbacks the DDP tests add on the command line (not a test module).

Imported by the `vitlab fit` subprocesses of ``tests/test_ddp_lightning.py``.
"""

from __future__ import annotations

import os
import signal
from pathlib import Path

import torch
from lightning.pytorch import Callback


class DumpRankState(Callback):
    """Writes ``<run>/rank<r>.pt``: every tensor of the final state dict plus the buffers it leaves out
    (non-persistent ones), and the first training draws of the global RNG."""

    def __init__(self) -> None:
        self.draws = None

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        if self.draws is None:  # what masks / drop-path would draw on this rank at the first step
            state = torch.get_rng_state()
            self.draws = torch.rand(8)
            torch.set_rng_state(state)

    def on_train_end(self, trainer, pl_module):
        state = {k: v.detach().cpu().clone() for k, v in pl_module.state_dict().items() if torch.is_tensor(v)}
        for name, buf in pl_module.named_buffers():
            if name not in state:
                state[f"{name} (non-persistent)"] = buf.detach().cpu().clone()
        out = Path(trainer.default_root_dir) / f"rank{trainer.global_rank}.pt"
        torch.save({"state": state, "draws": self.draws, "world": trainer.world_size}, out)


class DieOnRank(Callback):
    """Ends process ``rank`` abruptly after its first training batch: ``exit`` with exit code 3, or ``kill``
    with SIGKILL (as the out-of-memory killer does)."""

    def __init__(self, rank: int = 1, how: str = "exit") -> None:
        self.rank, self.how = rank, how

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        if trainer.global_rank == self.rank:
            if self.how == "kill":
                os.kill(os.getpid(), signal.SIGKILL)
            os._exit(3)
