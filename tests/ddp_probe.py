"""A callback the DDP test adds on the command line: each rank dumps what the test compares.

Not a test module; imported by the `vitlab fit` subprocesses of ``tests/test_ddp_lightning.py``.
"""

from __future__ import annotations

from pathlib import Path

import torch
from lightning.pytorch import Callback


class DumpRankState(Callback):
    """Writes ``<run>/rank<r>.pt``: final state dict and the first training draws of the global RNG."""

    def __init__(self) -> None:
        self.draws = None

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        if self.draws is None:  # what masks / drop-path would draw on this rank at the first step
            state = torch.get_rng_state()
            self.draws = torch.rand(8)
            torch.set_rng_state(state)

    def on_train_end(self, trainer, pl_module):
        out = Path(trainer.default_root_dir) / f"rank{trainer.global_rank}.pt"
        state = {k: v.detach().cpu().clone() for k, v in pl_module.state_dict().items()}
        torch.save({"state_dict": state, "draws": self.draws, "world": trainer.world_size}, out)
