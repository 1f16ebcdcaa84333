"""Training throughput of vitlab vs a plain PyTorch loop of the same math, eager and compiled, in one process.

Workloads (the defaults; ``--tiny`` shrinks every model so the script also runs on a CPU):

* ``mae``: MAE ViT-B/16 at 224 px, mask 0.75, decoder 8 x 512, batch 512 per GPU;
* ``vit``: supervised ViT-B/16 at 224 px, 1000 classes, batch 256 per GPU;
* ``stereo``: CroCo-Stereo B-B train step at 352 x 704 (LaplacianLossBounded2), batch 8 pairs per GPU.

Arms, each eager and compiled (``torch.compile``):

* **vitlab**: the shipped LightningModule (``vitlab.pretrain.MAE``, ``vitlab.core.ImageClassification``,
  ``vitlab.stereo.StereoMatching``) trained by a real ``Trainer.fit`` (bf16-mixed on GPU, fused AdamW,
  per-step lr schedule; ``compile: true`` = vitlab's regional compilation) on random batches that already
  live on the device (no input pipeline is measured);
* **plain**: a hand-written loop of the same math with no Lightning: timm blocks (MAE: an independent
  re-implementation; ViT: ``timm`` ``VisionTransformer``; stereo: the same ``BinocularViT`` network and loss),
  ``torch.autocast`` bf16, fused AdamW, LambdaLR; compiled = the same regional scope as vitlab's
  (``vitlab.core.perf.compile_regions``: each block and dense head).

The arms run one after the other (each holds its own model; two ViT-B MAE at batch 512 do not fit one GPU
together); on a dedicated GPU the order matters little, on a shared one compare ratios from one run only.

Printed per run: images/s (pairs/s for stereo), MFU (model FLOPs of one training step counted with
``torch.utils.flop_counter`` on the plain model, divided by the device's dense peak for the run's precision:
bf16, or TF32 / FP32 for ``32-true``), peak memory and
the vitlab / plain ratio. The TF32 / cuDNN switches the CLI sets (:func:`vitlab.core.perf.configure_cuda_fast_paths`)
are applied first.

    python benchmarks/gpu_throughput.py                 # 1 GPU, all workloads, eager + compiled (< 5 min)
    python benchmarks/gpu_throughput.py --quick         # eager only, fewer steps (about 1 min)
    torchrun --nproc_per_node 8 benchmarks/gpu_throughput.py   # 8 GPUs, DDP (images/s summed over ranks)
    python benchmarks/gpu_throughput.py --tiny          # tiny models, runs on a CPU (the test suite's smoke test)
    python benchmarks/gpu_throughput.py --arms vitlab   # the vitlab arm only (benchmarks/gpu_check.py)
"""

from __future__ import annotations

import argparse
import gc
import math
import os
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from lightning.pytorch import Callback, Trainer

sys.path.insert(0, str(Path(__file__).resolve().parent))
from pretrain_mae_step import RefMAE  # noqa: E402  (the plain MAE of the CPU step benchmark)

from vitlab.core import ImageClassification, ViT  # noqa: E402
from vitlab.core.perf import compile_regions, configure_cuda_fast_paths  # noqa: E402

#: dense peaks (FLOP/s) by device-name substring, the first match wins: (bf16 tensor cores, TF32 tensor cores, FP32)
#: from the vendors' data sheets (dense, not the 2:4-sparse figures)
PEAKS = [("H200", (989e12, 494e12, 67e12)), ("H100 NVL", (835e12, 418e12, 60e12)),
         ("H100 PCIe", (756e12, 378e12, 51e12)), ("GH200", (989e12, 494e12, 67e12)), ("H100", (989e12, 494e12, 67e12)),
         ("B200", (2250e12, 1100e12, 80e12)), ("A100", (312e12, 156e12, 19.5e12)), ("L40S", (362e12, 183e12, 91.6e12)),
         ("A10G", (70e12, 35e12, 31.2e12)), ("L4", (121e12, 60e12, 30.3e12))]


# ---------------------------------------------------------------------------------------------- setup
@dataclass
class Sizes:
    img: int = 224
    patch: int = 16
    dim: int = 768
    depth: int = 12
    heads: int = 12
    dec_dim: int = 512
    dec_depth: int = 8
    dec_heads: int = 16
    classes: int = 1000
    stereo_hw: tuple[int, int] = (352, 704)
    stereo: dict | None = None  # BinocularViT kwargs

    @classmethod
    def tiny(cls) -> Sizes:
        return cls(img=32, patch=8, dim=32, depth=2, heads=2, dec_dim=32, dec_depth=1, dec_heads=2, classes=10,
                   stereo_hw=(32, 64),
                   stereo=dict(enc_embed_dim=32, enc_depth=2, enc_num_heads=2, dec_embed_dim=32, dec_depth=2,
                               dec_num_heads=2, layer_dims=(16, 16, 32, 32), feature_dim=16, last_dim=8))


class DeviceBatches:
    """The same on-device batch ``n`` times (an iterable Lightning accepts as a train loader)."""

    def __init__(self, batch: dict[str, torch.Tensor], n: int) -> None:
        self.batch, self.n = batch, n

    def __len__(self) -> int:
        return self.n

    def __iter__(self) -> Iterator[dict[str, torch.Tensor]]:
        for _ in range(self.n):
            yield self.batch


@dataclass
class Workload:
    name: str
    unit: str
    batch: int
    make_batch: Callable[[torch.device], dict[str, torch.Tensor]]
    make_module: Callable[[bool], Any]  # compile flag -> LightningModule
    make_plain: Callable[[], torch.nn.Module]
    plain_loss: Callable[[torch.nn.Module, dict[str, torch.Tensor]], torch.Tensor]


def workloads(args, s: Sizes) -> dict[str, Workload]:
    g = torch.Generator().manual_seed(0)

    def images(b, h, w, device):
        return torch.randn(b, 3, h, w, generator=g).to(device)

    def mae_module(compile_: bool):
        from vitlab.pretrain import MAE

        enc = ViT(embed_dim=s.dim, depth=s.depth, num_heads=s.heads, patch_size=s.patch, img_size=s.img)
        return MAE(enc, decoder_embed_dim=s.dec_dim, decoder_depth=s.dec_depth, decoder_num_heads=s.dec_heads,
                   batch_size=args.mae_batch, warmup_steps=2, compile=compile_)

    def vit_module(compile_: bool):
        enc = ViT(embed_dim=s.dim, depth=s.depth, num_heads=s.heads, patch_size=s.patch, img_size=s.img)
        return ImageClassification(enc, num_classes=s.classes, warmup_steps=2, compile=compile_)

    def vit_plain():
        from timm.models.vision_transformer import VisionTransformer

        return VisionTransformer(img_size=s.img, patch_size=s.patch, embed_dim=s.dim, depth=s.depth,
                                 num_heads=s.heads, num_classes=s.classes)

    def stereo_net():
        from vitlab.stereo import BinocularViT

        if s.stereo is not None:
            return BinocularViT(img_size=s.stereo_hw, **s.stereo)
        return BinocularViT(preset="B-B", img_size=s.stereo_hw)

    def stereo_module(compile_: bool):
        from vitlab.stereo import StereoMatching

        return StereoMatching(stereo_net(), warmup_epochs=0.0, warmup_steps=2, compile=compile_)

    def stereo_loss(net, b):
        from vitlab.stereo.losses import LaplacianLossBounded2

        return LaplacianLossBounded2()(net(b["image"], b["right"]).float(), b["disparity"])

    H, W = s.stereo_hw
    return {
        "mae": Workload("MAE ViT/16 (mask 0.75)", "img/s", args.mae_batch,
                        lambda d: {"image": images(args.mae_batch, s.img, s.img, d)}, mae_module,
                        lambda: RefMAE(s.dim, s.depth, s.heads, img=s.img, p=s.patch, ddim=s.dec_dim,
                                       ddepth=s.dec_depth, dheads=s.dec_heads),
                        lambda m, b: m(b["image"])),
        "vit": Workload("ViT/16 supervised", "img/s", args.vit_batch,
                        lambda d: {"image": images(args.vit_batch, s.img, s.img, d),
                                   "label": torch.randint(0, s.classes, (args.vit_batch,), generator=g).to(d)},
                        vit_module, vit_plain, lambda m, b: F.cross_entropy(m(b["image"]), b["label"])),
        "stereo": Workload(f"CroCo-Stereo {H}x{W}", "pairs/s", args.stereo_batch,
                           lambda d: {"image": images(args.stereo_batch, H, W, d),
                                      "right": images(args.stereo_batch, H, W, d),
                                      "disparity": (torch.rand(args.stereo_batch, 1, H, W, generator=g) * 64).to(d)},
                           stereo_module, stereo_net, stereo_loss),
    }


# ---------------------------------------------------------------------------------------------- timing
def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


class StepTimer(Callback):
    """Wall time from the start of step ``warmup`` to the end of the last step (device synced at both ends); the
    epoch-end and train-end hooks after it are not counted, as the plain loop has none."""

    def __init__(self, warmup: int, total: int, device: torch.device) -> None:
        self.warmup, self.total, self.device, self.t0, self.t1 = warmup, total, device, None, None

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        if batch_idx == self.warmup:
            _sync(self.device)
            self.t0 = time.perf_counter()

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if batch_idx == self.total - 1:
            _sync(self.device)
            self.t1 = time.perf_counter()


def _world() -> tuple[int, int, int]:
    return int(os.environ.get("WORLD_SIZE", 1)), int(os.environ.get("RANK", 0)), int(os.environ.get("LOCAL_RANK", 0))


def run_vitlab(w: Workload, compiled: bool, args, device: torch.device) -> float:
    world, _, _ = _world()
    module = w.make_module(compiled)
    total = args.warmup + args.steps
    timer = StepTimer(args.warmup, total, device)
    trainer = Trainer(
        accelerator="gpu" if device.type == "cuda" else "cpu",
        devices=int(os.environ.get("LOCAL_WORLD_SIZE", 1)) if world > 1 else 1,
        num_nodes=max(1, world // int(os.environ.get("LOCAL_WORLD_SIZE", world))) if world > 1 else 1,
        strategy="ddp" if world > 1 else "auto",
        precision=args.precision, max_steps=total, logger=False, enable_checkpointing=False,
        enable_progress_bar=False, enable_model_summary=False, num_sanity_val_steps=0, limit_val_batches=0,
        callbacks=[timer],
    )
    trainer.fit(module, train_dataloaders=DeviceBatches(w.make_batch(device), total))
    return args.steps * w.batch * world / (timer.t1 - timer.t0)


def _plain_optimizer(model: torch.nn.Module, device: torch.device):
    named = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    decay = [p for n, p in named if p.ndim >= 2]
    other = [p for n, p in named if p.ndim < 2]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": 0.05}, {"params": other, "weight_decay": 0.0}],
                            lr=1e-4, betas=(0.9, 0.95), fused=True)
    return opt, torch.optim.lr_scheduler.LambdaLR(opt, lambda k: min(1.0, (k + 1) / 2))


def run_plain(w: Workload, compiled: bool, args, device: torch.device) -> float:
    world, _, local = _world()
    torch.manual_seed(0)
    model = w.make_plain().to(device).train()
    opt, sched = _plain_optimizer(model, device)
    if world > 1:
        model = torch.nn.parallel.DistributedDataParallel(model, device_ids=[local] if device.type == "cuda" else None)
    if compiled:  # the scope vitlab's `compile: true` has: each block and dense head (timm blocks, CrossBlock, DPT)
        compile_regions(model)
    batch = w.make_batch(device)
    dtype = torch.bfloat16 if args.precision == "bf16-mixed" else None
    t0 = None
    for i in range(args.warmup + args.steps):
        if i == args.warmup:
            _sync(device)
            t0 = time.perf_counter()
        with torch.autocast(device.type, dtype=dtype or torch.float32, enabled=dtype is not None):
            loss = w.plain_loss(model, batch)
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        sched.step()
    _sync(device)
    return args.steps * w.batch * world / (time.perf_counter() - t0)


def flops_per_item(w: Workload, args, device: torch.device) -> float:
    """FLOPs of one training step (forward + backward) per image/pair, counted on the plain model."""
    from torch.utils.flop_counter import FlopCounterMode

    torch.manual_seed(0)
    model = w.make_plain().to(device).train()
    full = w.make_batch(device)
    n = min(w.batch, 2)
    batch = {k: v[:n] for k, v in full.items()}
    dtype = torch.bfloat16 if args.precision == "bf16-mixed" else None
    with FlopCounterMode(display=False) as fc:
        with torch.autocast(device.type, dtype=dtype or torch.float32, enabled=dtype is not None):
            loss = w.plain_loss(model, batch)
        loss.backward()
    del model, full
    return fc.get_total_flops() / n


def peak_flops(device: torch.device, override_tflops: float | None, precision: str = "bf16-mixed") -> float | None:
    """The device's dense peak for the matmuls of ``precision``: bf16 for ``bf16-mixed``; for ``32-true`` TF32
    when fp32 matmuls may use it (``torch.get_float32_matmul_precision() != "highest"``), else FP32."""
    if override_tflops:
        return override_tflops * 1e12
    if device.type != "cuda":
        return None
    name = torch.cuda.get_device_name(device)
    peaks = next((v for k, v in PEAKS if k in name), None)
    if peaks is None:
        return None
    if precision.startswith("bf16"):
        return peaks[0]
    return peaks[1] if torch.get_float32_matmul_precision() != "highest" else peaks[2]


def _reset(device: torch.device) -> None:
    gc.collect()
    torch._dynamo.reset()
    if device.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)


def _peak_gb(device: torch.device) -> float:
    return torch.cuda.max_memory_allocated(device) / 2**30 if device.type == "cuda" else float("nan")


# ---------------------------------------------------------------------------------------------- main
def parse(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--workloads", default="mae,vit,stereo", help="comma-separated subset of mae,vit,stereo")
    ap.add_argument("--modes", default=None, help="eager,compiled (default both; --quick and --tiny: eager)")
    ap.add_argument("--arms", default="plain,vitlab", help="comma-separated subset of plain,vitlab")
    ap.add_argument("--mae-batch", type=int, default=None, help="per-GPU batch (512; tiny 4)")
    ap.add_argument("--vit-batch", type=int, default=None, help="per-GPU batch (256; tiny 4)")
    ap.add_argument("--stereo-batch", type=int, default=None, help="per-GPU pairs (8; tiny 2)")
    ap.add_argument("--steps", type=int, default=None, help="timed steps (30; quick 10; tiny 2)")
    ap.add_argument("--warmup", type=int, default=None, help="untimed steps, compilation included (8; tiny 1)")
    ap.add_argument("--quick", action="store_true", help="eager only, 10 timed steps (about 1 min on a GPU)")
    ap.add_argument("--tiny", action="store_true", help="tiny models: a CPU smoke run")
    ap.add_argument("--device", default=None, help="cuda or cpu (default: cuda when available)")
    ap.add_argument("--precision", default=None, help="bf16-mixed (GPU default) or 32-true (CPU default)")
    ap.add_argument("--peak-tflops", type=float, default=None, help="device peak for MFU (default: from its name)")
    args = ap.parse_args(argv)
    tiny = args.tiny
    args.mae_batch = args.mae_batch or (4 if tiny else 512)
    args.vit_batch = args.vit_batch or (4 if tiny else 256)
    args.stereo_batch = args.stereo_batch or (2 if tiny else 8)
    args.steps = (2 if tiny else 10 if args.quick else 30) if args.steps is None else args.steps
    args.warmup = (1 if tiny else 3 if args.quick else 8) if args.warmup is None else args.warmup
    if args.steps < 1 or args.warmup < 0:
        ap.error(f"--steps must be >= 1 and --warmup >= 0, got {args.steps} and {args.warmup}")
    args.modes = (args.modes or ("eager" if tiny or args.quick else "eager,compiled")).split(",")
    bad = set(args.modes) - {"eager", "compiled"}
    if bad:
        ap.error(f"unknown modes {sorted(bad)}; use eager and/or compiled")
    args.arms = args.arms.split(",")
    if not args.arms or set(args.arms) - {"plain", "vitlab"}:
        ap.error(f"unknown arms in {args.arms}; use plain and/or vitlab")
    args.workloads = args.workloads.split(",")
    if set(args.workloads) - {"mae", "vit", "stereo"}:
        ap.error(f"unknown workloads in {args.workloads}; use mae, vit, stereo")
    args.device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    args.precision = args.precision or ("bf16-mixed" if args.device == "cuda" else "32-true")
    return args


def main(argv: list[str] | None = None) -> list[dict[str, Any]]:
    args = parse(argv)
    world, rank, local = _world()
    device = torch.device(args.device, local) if args.device == "cuda" else torch.device("cpu")
    if device.type == "cuda":
        torch.cuda.set_device(device)
    configure_cuda_fast_paths()
    if world > 1 and not torch.distributed.is_initialized():
        torch.distributed.init_process_group("nccl" if device.type == "cuda" else "gloo")
    sizes = Sizes.tiny() if args.tiny else Sizes()
    specs = workloads(args, sizes)
    peak = peak_flops(device, args.peak_tflops, args.precision)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else f"CPU ({torch.get_num_threads()} threads)"
    rows: list[dict[str, Any]] = []
    for key in args.workloads:
        w = specs[key]
        _reset(device)
        fpi = flops_per_item(w, args, device)
        for mode in args.modes:
            compiled = mode == "compiled"
            res = {}
            for arm, fn in (("plain", run_plain), ("vitlab", run_vitlab)):
                if arm not in args.arms:
                    continue
                _reset(device)
                rate = fn(w, compiled, args, device)
                res[arm] = (rate, _peak_gb(device))
            for arm, (rate, mem) in res.items():
                mfu = rate / world * fpi / peak if peak else float("nan")
                ratio = rate / res["plain"][0] if "plain" in res else float("nan")
                rows.append({"workload": key, "name": w.name, "mode": mode, "arm": arm, "rate": rate,
                             "unit": w.unit, "mfu": mfu, "peak_gb": mem, "ratio": ratio,
                             "gflops_per_item": fpi / 1e9})
    if rank == 0:
        print(f"# {name} x {world}; {args.precision}; timed {args.steps} steps after {args.warmup} warm-up; "
              f"batches per device: mae {args.mae_batch}, vit {args.vit_batch}, stereo {args.stereo_batch}")
        print("| workload | mode | arm | throughput | MFU | peak mem (GiB) | vitlab / plain | GFLOP/item |")
        print("|---|---|---|---|---|---|---|---|")
        for r in rows:
            mfu = "n/a" if math.isnan(r["mfu"]) else f"{100 * r['mfu']:.1f} %"
            mem = "n/a" if math.isnan(r["peak_gb"]) else f"{r['peak_gb']:.1f}"
            print(f"| {r['name']} | {r['mode']} | {r['arm']} | {r['rate']:.1f} {r['unit']} | {mfu} | {mem} | "
                  f"{r['ratio']:.3f} | {r['gflops_per_item']:.4g} |")
    return rows


if __name__ == "__main__":
    main()
