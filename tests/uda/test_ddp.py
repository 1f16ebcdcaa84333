"""DACS + MIC under spawned DDP through Lightning (gloo, 2 CPU processes): every tensor of the state (student,
EMA teacher, BatchNorm running statistics) agrees across ranks."""

from __future__ import annotations

import lightning.pytorch as pl
import pytest
import torch
from lightning.pytorch.loggers import CSVLogger

from vitlab.core import MiT
from vitlab.core.data import SyntheticScenesDataModule
from vitlab.uda import DACS

pytestmark = [pytest.mark.ddp, pytest.mark.slow]


class _Dump(pl.Callback):
    def __init__(self, out) -> None:
        self.out = out

    def on_train_end(self, trainer, pl_module) -> None:
        state = {k: v.detach().clone() for k, v in pl_module.state_dict().items()}
        torch.save({"state": state, "updates": int(pl_module.teacher.num_updates)},
                   self.out / f"rank{trainer.global_rank}.pt")


def test_dacs_ranks_agree(tmp_path):
    torch.manual_seed(0)
    model = DACS(MiT("b0", embed_dims=(8, 16, 32, 64), depths=(1, 1, 1, 1), num_heads=(1, 2, 4, 8),
                     drop_path_rate=0.0), num_classes=7, lr=1e-3, warmup_steps=1, alpha=0.99, pl_crop_top=0,
                 pl_crop_bottom=0, fd_lambda=0.0, mic=True, mic_block_size=8, head_kwargs={"embed_dim": 16})
    dm = SyntheticScenesDataModule(modalities=["image", "semantic"], size=32, batch_size=2, train_samples=8,
                                   val_samples=2, domain="source", target_domain="target")
    trainer = pl.Trainer(max_steps=2, accelerator="cpu", devices=2, strategy="ddp_spawn", logger=CSVLogger(tmp_path),
                         enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
                         num_sanity_val_steps=0, check_val_every_n_epoch=10_000, callbacks=[_Dump(tmp_path)],
                         default_root_dir=tmp_path)
    trainer.fit(model, dm)
    r0, r1 = (torch.load(tmp_path / f"rank{r}.pt") for r in (0, 1))
    assert r0["updates"] == r1["updates"] == 2
    assert any(k.endswith("running_mean") for k in r0["state"]), "the DAFormer head has BatchNorm"
    differ = [k for k, v in r0["state"].items() if not torch.equal(v, r1["state"][k])]
    assert not differ, f"{len(differ)} of {len(r0['state'])} tensors differ between ranks: {differ[:8]}"
