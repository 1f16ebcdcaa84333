"""TADFormer train-step time inside Lightning vs a plain PyTorch loop (same module, same in-memory batches).

The Lightning arm uses the module's own ``configure_optimizers`` (AdamW groups + warmup-cosine) and
``training_step`` (loss + logging); the plain arm runs forward, the same multi-task loss, backward and an AdamW
step. Per-step wall time between batch ends, median after warm-up.

    python benchmarks/mtl_step_time.py --img 64 --batch 8 --steps 20
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
from lightning.pytorch import Callback, LightningDataModule, Trainer
from torch.utils.data import DataLoader

from vitlab.core import Swin
from vitlab.mtl import TADFormer

TASKS = ["semseg", "human_parts", "sal", "normals"]


def make_batches(n: int, batch: int, img: int) -> list[dict[str, torch.Tensor]]:
    g = torch.Generator().manual_seed(0)
    out = []
    for _ in range(n):
        nrm = torch.randn(batch, 3, img, img, generator=g)
        out.append({"image": torch.randn(batch, 3, img, img, generator=g),
                    "semseg": torch.randint(0, 21, (batch, img, img), generator=g),
                    "human_parts": torch.randint(0, 7, (batch, img, img), generator=g),
                    "sal": (torch.rand(batch, 1, img, img, generator=g) > 0.5).float(),
                    "normals": nrm / nrm.norm(dim=1, keepdim=True)})
    return out


class Data(LightningDataModule):
    def __init__(self, batches: list) -> None:
        super().__init__()
        self.batches = batches

    def train_dataloader(self) -> DataLoader:
        return DataLoader(self.batches, batch_size=None, shuffle=False)


class StepTimer(Callback):
    def __init__(self) -> None:
        self.ends: list[float] = []

    def on_train_batch_end(self, *args) -> None:
        self.ends.append(time.perf_counter())


def module(img: int, full: bool) -> TADFormer:
    torch.manual_seed(0)
    kw = {} if full else dict(embed_dim=16, depths=(2, 2, 2, 2), num_heads=(2, 2, 4, 4))
    return TADFormer(Swin(img_size=img, drop_path_rate=0.0, **kw), TASKS, rank=16, lr=1e-4)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--img", type=int, default=64)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--swin-t", action="store_true", help="full Swin-T instead of the small test Swin")
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    batches = make_batches(args.steps + args.warmup, args.batch, args.img)

    m = module(args.img, args.swin_t).train()
    opt = torch.optim.AdamW([p for p in m.parameters() if p.requires_grad], lr=1e-4)
    t_plain = []
    for k, b in enumerate(batches):
        t0 = time.perf_counter()
        loss, _ = m.criterion(m(b["image"]), b)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if k >= args.warmup:
            t_plain.append(time.perf_counter() - t0)

    m = module(args.img, args.swin_t)
    timer = StepTimer()
    trainer = Trainer(accelerator="cpu", devices=1, max_steps=len(batches), logger=False, enable_checkpointing=False,
                      enable_progress_bar=False, enable_model_summary=False, callbacks=[timer],
                      num_sanity_val_steps=0, limit_val_batches=0)
    trainer.fit(m, datamodule=Data(batches))
    t_pl = [b - a for a, b in zip(timer.ends[args.warmup - 1:], timer.ends[args.warmup:])]
    p, q = statistics.median(t_plain), statistics.median(t_pl)
    name = "Swin-T" if args.swin_t else "Swin C16 d2222"
    print(f"TADFormer r=16 on {name} @ {args.img}px, batch {args.batch}, {args.threads} thread(s), "
          f"median of {args.steps} steps after {args.warmup} warm-up")
    print(f"plain loop {p:.4f} s/step   Lightning {q:.4f} s/step   ratio {q / p:.3f}")


if __name__ == "__main__":
    main()
