"""Training-step and tiled-inference throughput (pairs/s) of a BinocularViT, inside Lightning vs a plain loop.

    python benchmarks/stereo_throughput.py                       # small model, 352x704 crops, CPU/GPU auto
    python benchmarks/stereo_throughput.py --preset L-B --batch 6 --precision bf16-mixed   # CroCo-Stereo size

Train: AdamW step on LaplacianLossBounded2 with random pairs of ``--size`` (the CroCo-Stereo crop 352x704).
``--interleave``: CPU step ratio instead: one plain step after every Lightning step in one process (machine
load hits both arms alike); prints the median per-step time ratio Lightning / plain.
Inference: tiled prediction (window = ``--size``, overlap 0.7) of ``--infer-size`` frames (KITTI-like
384x1248 by default) via ``StereoMatching.predict_step`` in ``Trainer.predict`` vs the same call in a loop.
"""

from __future__ import annotations

import argparse
import time

import lightning.pytorch as pl
import torch
from torch.utils.data import DataLoader, Dataset

from vitlab.stereo import BinocularViT, StereoMatching


class RandomPairs(Dataset):
    def __init__(self, n: int, size: tuple[int, int]) -> None:
        self.n, self.size = n, size

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i: int) -> dict:
        g = torch.Generator().manual_seed(i)
        H, W = self.size
        return {"image": torch.randn(3, H, W, generator=g), "right": torch.randn(3, H, W, generator=g),
                "disparity": torch.rand(1, H, W, generator=g) * 64}


def build(args) -> StereoMatching:
    kw = {} if args.preset else dict(enc_embed_dim=args.dim, enc_depth=args.depth, enc_num_heads=args.heads,
                                     dec_embed_dim=args.dim, dec_depth=args.dec_depth, dec_num_heads=args.heads)
    net = BinocularViT(preset=args.preset, img_size=tuple(args.size), **kw)
    return StereoMatching(net, tile_size=list(args.size), lr=3e-5, warmup_epochs=0)


class Timer(pl.Callback):
    def __init__(self, warmup: int) -> None:
        self.warmup, self.t0, self.n = warmup, None, 0

    def _sync(self):
        if torch.cuda.is_available():
            torch.cuda.synchronize()

    def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx):
        self._sync()
        if batch_idx + 1 == self.warmup:
            self.t0 = time.perf_counter()
        elif batch_idx + 1 > self.warmup:
            self.n += 1

    def on_predict_batch_end(self, trainer, module, outputs, batch, batch_idx, dataloader_idx=0):
        self.on_train_batch_end(trainer, module, outputs, batch, batch_idx)

    def rate(self, batch: int) -> float:
        return self.n * batch / (time.perf_counter() - self.t0)


def plain_train(args, device, dtype) -> float:
    model = build(args).to(device)
    opt = torch.optim.AdamW(model.parameters(), lr=3e-5, betas=(0.9, 0.95), weight_decay=0.05, fused=True)
    loader = DataLoader(RandomPairs(args.batch * (args.steps + args.warmup), tuple(args.size)), batch_size=args.batch)
    t0 = None
    for i, b in enumerate(loader):
        b = {k: v.to(device) for k, v in b.items()}
        with torch.autocast(device.type, dtype=dtype, enabled=dtype is not None):
            loss = model.disparity_loss(model(b["image"], b["right"]).float(), b)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if device.type == "cuda":
            torch.cuda.synchronize()
        if i + 1 == args.warmup:
            t0 = time.perf_counter()
    return args.steps * args.batch / (time.perf_counter() - t0)


def lightning_train(args, accel, precision) -> float:
    model = build(args)
    timer = Timer(args.warmup)
    trainer = pl.Trainer(accelerator=accel, devices=1, precision=precision, max_steps=args.steps + args.warmup,
                         logger=False, enable_checkpointing=False, enable_progress_bar=False,
                         enable_model_summary=False, callbacks=[timer], num_sanity_val_steps=0)
    loader = DataLoader(RandomPairs(args.batch * (args.steps + args.warmup), tuple(args.size)), batch_size=args.batch)
    trainer.fit(model, train_dataloaders=loader)
    return timer.rate(args.batch)


def plain_infer(args, device, dtype) -> float:
    model = build(args).to(device).eval()
    loader = DataLoader(RandomPairs(args.infer_pairs + 1, tuple(args.infer_size)), batch_size=1)
    t0 = None
    with torch.inference_mode():
        for i, b in enumerate(loader):
            b = {k: v.to(device) for k, v in b.items()}
            with torch.autocast(device.type, dtype=dtype, enabled=dtype is not None):
                model.predict_step(b, i)
            if device.type == "cuda":
                torch.cuda.synchronize()
            if i == 0:
                t0 = time.perf_counter()
    return args.infer_pairs / (time.perf_counter() - t0)


def lightning_infer(args, accel, precision) -> float:
    model = build(args)
    timer = Timer(1)
    trainer = pl.Trainer(accelerator=accel, devices=1, precision=precision, logger=False,
                         enable_progress_bar=False, enable_model_summary=False, callbacks=[timer])
    loader = DataLoader(RandomPairs(args.infer_pairs + 1, tuple(args.infer_size)), batch_size=1)
    trainer.predict(model, loader, return_predictions=False)
    return timer.rate(1)


class Interleave(pl.Callback):
    """Times each Lightning step, then runs and times one plain step of the same network and loss."""

    def __init__(self, args, device) -> None:
        self.model = build(args).to(device)
        self.opt = torch.optim.AdamW(self.model.parameters(), lr=3e-5, betas=(0.9, 0.95), weight_decay=0.05,
                                     fused=True)
        self.batches = list(DataLoader(RandomPairs(args.batch * 4, tuple(args.size)), batch_size=args.batch))
        self.lt, self.pt, self.t, self.k = [], [], 0.0, 0

    def on_train_batch_start(self, *a):
        self.t = time.perf_counter()

    def on_train_batch_end(self, *a):
        self.lt.append(time.perf_counter() - self.t)
        b = self.batches[self.k % len(self.batches)]
        self.k += 1
        t = time.perf_counter()
        loss = self.model.disparity_loss(self.model(b["image"], b["right"]), b)
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        self.opt.step()
        self.pt.append(time.perf_counter() - t)


def interleaved_ratio(args) -> None:
    import statistics

    inter = Interleave(args, torch.device("cpu"))
    model = build(args)
    trainer = pl.Trainer(accelerator="cpu", devices=1, max_steps=args.steps + args.warmup, logger=False,
                         enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
                         callbacks=[inter], num_sanity_val_steps=0, limit_val_batches=0)
    loader = DataLoader(RandomPairs(args.batch * (args.steps + args.warmup), tuple(args.size)), batch_size=args.batch)
    trainer.fit(model, train_dataloaders=loader)
    lt, pt = inter.lt[args.warmup:], inter.pt[args.warmup:]
    ratios = [a / b for a, b in zip(lt, pt)]
    print(f"stereo train step, CPU x{torch.get_num_threads()} threads, {args.size[0]}x{args.size[1]}, batch "
          f"{args.batch}: median step Lightning {statistics.median(lt):.3f} s, plain {statistics.median(pt):.3f} s, "
          f"median per-step ratio {statistics.median(ratios):.3f}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--preset", default=None, choices=[None, "B-S", "B-B", "L-B"])
    ap.add_argument("--dim", type=int, default=128)
    ap.add_argument("--depth", type=int, default=4)
    ap.add_argument("--dec-depth", type=int, default=3)
    ap.add_argument("--heads", type=int, default=4)
    ap.add_argument("--size", type=int, nargs=2, default=[352, 704])
    ap.add_argument("--infer-size", type=int, nargs=2, default=[384, 1248])
    ap.add_argument("--batch", type=int, default=2)
    ap.add_argument("--steps", type=int, default=5)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--infer-pairs", type=int, default=2)
    ap.add_argument("--precision", default="32-true", choices=["32-true", "bf16-mixed"])
    ap.add_argument("--interleave", action="store_true", help="CPU per-step ratio Lightning / plain (train only)")
    ap.add_argument("--threads", type=int, default=0, help="torch intra-op threads (0 = torch default)")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.interleave:
        interleaved_ratio(args)
        return
    cuda = torch.cuda.is_available()
    device = torch.device("cuda" if cuda else "cpu")
    accel = "gpu" if cuda else "cpu"
    dtype = torch.bfloat16 if args.precision == "bf16-mixed" else None
    name = torch.cuda.get_device_name() if cuda else f"CPU x{torch.get_num_threads()} threads"
    print(f"# {name}; model {args.preset or f'dim {args.dim} enc {args.depth} dec {args.dec_depth}'}; "
          f"train {args.size[0]}x{args.size[1]} batch {args.batch}; tiled inference {args.infer_size[0]}x"
          f"{args.infer_size[1]}; {args.precision}")
    rows = [("train step", plain_train(args, device, dtype), lightning_train(args, accel, args.precision)),
            ("tiled inference", plain_infer(args, device, dtype), lightning_infer(args, accel, args.precision))]
    print(f"{'':18s} {'plain loop':>12s} {'Lightning':>12s}   (pairs/s)")
    for name, a, b in rows:
        print(f"{name:18s} {a:12.3f} {b:12.3f}")


if __name__ == "__main__":
    main()
