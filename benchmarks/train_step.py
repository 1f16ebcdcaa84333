"""Train-step time of a vitlab task module inside Lightning vs a plain PyTorch loop (same run).

Three arms on identical random batches (data already in memory, so only the step is timed):
  plain/timm     timm ``VisionTransformer`` + AdamW in a bare loop (the reference)
  plain/vitlab   vitlab ``ImageClassification(ViT)`` forward/backward/step in a bare loop
  lightning      the same module trained by ``Trainer.fit`` (per-step wall time between batch ends)

    python benchmarks/train_step.py --size small --img 224 --batch 8 --steps 20
"""

from __future__ import annotations

import argparse
import statistics
import time

import timm
import torch
from lightning.pytorch import Callback, LightningDataModule, Trainer
from torch.utils.data import DataLoader, Dataset

from vitlab.core import ImageClassification, ViT
from vitlab.core.backbones.vit import VIT_SIZES


class RandomImages(Dataset):
    def __init__(self, n: int, img: int, classes: int) -> None:
        g = torch.Generator().manual_seed(0)
        self.x = torch.randn(n, 3, img, img, generator=g)
        self.y = torch.randint(0, classes, (n,), generator=g)

    def __len__(self) -> int:
        return len(self.x)

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        return {"image": self.x[i], "label": self.y[i]}


class Data(LightningDataModule):
    def __init__(self, ds: Dataset, batch: int) -> None:
        super().__init__()
        self.ds, self.batch = ds, batch

    def train_dataloader(self) -> DataLoader:
        return DataLoader(self.ds, batch_size=self.batch, shuffle=False, drop_last=True)


class StepTimer(Callback):
    def __init__(self) -> None:
        self.ends: list[float] = []

    def on_train_batch_end(self, *args) -> None:
        self.ends.append(time.perf_counter())


def plain_loop(model, forward, batches, warmup: int) -> list[float]:
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-4, betas=(0.9, 0.95))
    times = []
    for k, b in enumerate(batches):
        t0 = time.perf_counter()
        loss = torch.nn.functional.cross_entropy(forward(b["image"]), b["label"])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if k >= warmup:
            times.append(time.perf_counter() - t0)
    return times


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--size", default="small", choices=sorted(VIT_SIZES))
    ap.add_argument("--img", type=int, default=224)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--classes", type=int, default=10)
    args = ap.parse_args()
    dim, depth, heads = VIT_SIZES[args.size]
    n = args.batch * (args.steps + args.warmup)
    ds = RandomImages(n, args.img, args.classes)
    batches = list(DataLoader(ds, batch_size=args.batch, shuffle=False, drop_last=True))

    torch.manual_seed(0)
    ref = timm.create_model("vit_base_patch16_224", pretrained=False, num_classes=args.classes, embed_dim=dim,
                            depth=depth, num_heads=heads, img_size=args.img)
    t_ref = plain_loop(ref, ref, batches, args.warmup)

    def module() -> ImageClassification:
        torch.manual_seed(0)
        return ImageClassification(backbone=ViT(size=args.size, img_size=args.img), num_classes=args.classes)

    m = module()
    t_plain = plain_loop(m, m, batches, args.warmup)

    m = module()
    timer = StepTimer()
    trainer = Trainer(accelerator="cpu", devices=1, max_steps=args.steps + args.warmup, logger=False,
                      enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
                      callbacks=[timer], num_sanity_val_steps=0)
    trainer.fit(m, datamodule=Data(ds, args.batch))
    t_pl = [b - a for a, b in zip(timer.ends[args.warmup - 1:], timer.ends[args.warmup:])]

    ref_med = statistics.median(t_ref)
    print(f"ViT-{args.size}/16 @ {args.img}px, batch {args.batch}, {torch.get_num_threads()} threads, "
          f"median of {args.steps} steps after {args.warmup} warmup")
    print(f"{'arm':<14}{'s/step':>10}{'img/s':>10}{'ratio':>8}")
    for name, t in (("plain/timm", t_ref), ("plain/vitlab", t_plain), ("lightning", t_pl)):
        med = statistics.median(t)
        print(f"{name:<14}{med:>10.3f}{args.batch / med:>10.1f}{med / ref_med:>8.3f}")


if __name__ == "__main__":
    main()
