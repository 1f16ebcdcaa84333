"""Compare every vitlab.peft tuner under one budget on SyntheticScenes (semantic segmentation and depth).

Protocol (same for every tuner):
1. "Pretraining": a small ViT is trained end to end on a *different* SyntheticScenes task — part
   segmentation (object halves) — for ``--pretrain-steps`` steps, and its backbone saved. This stands in
   for a pretrained checkpoint so the benchmark runs offline; it gives the frozen-backbone tuners features
   worth adapting.
2. Each tuner is applied to that backbone and trained for ``--steps`` steps on semantic segmentation
   (7 classes, val mIoU) and on depth (val AbsRel, RMSE), with the same head (``--head``), data, batch,
   lr, warmup/cosine schedule and seed.
3. Reported: metric, trainable backbone parameters, % of the pretrained backbone, and the mean train
   step time (forward + backward + optimizer, steps 5..end).

    python benchmarks/peft_compare.py                  # defaults: ~7 min on a shared 2-core CPU
    python benchmarks/peft_compare.py --steps 40 --tuners lora iconformer --tasks depth
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import torch
from lightning.pytorch import Callback, Trainer, seed_everything

from vitlab.core import DepthEstimation, SemanticSegmentation, ViT
from vitlab.core.backbones import save_checkpoint
from vitlab.core.data import NUM_CLASSES, NUM_PARTS, SyntheticScenesDataModule
from vitlab.peft import VPT, Adapter, AdaptFormer, BitFit, FullFineTune, LinearProbe, LoRA, iConFormer

TUNERS = {
    "linear_probe": lambda: LinearProbe(),
    "full": lambda: FullFineTune(),
    "bitfit": lambda: BitFit(),
    "lora": lambda: LoRA(rank=8, targets=["qkv", "proj", "fc1", "fc2"]),
    "adapter": lambda: Adapter(bottleneck=16),
    "adaptformer": lambda: AdaptFormer(bottleneck=16),
    "vpt_shallow": lambda: VPT(num_prompts=10),
    "vpt_deep": lambda: VPT(num_prompts=10, deep=True),
    "iconformer": lambda: iConFormer(bottleneck=16),
}


class StepTimer(Callback):
    def __init__(self) -> None:
        self.times: list[float] = []

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        self._t = time.perf_counter()

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        self.times.append(time.perf_counter() - self._t)


class PartSegmentation(SemanticSegmentation):
    """Pretraining task: segmentation of object parts (``parts`` modality) instead of classes."""

    def training_step(self, batch, batch_idx):
        return super().training_step({"image": batch["image"], "semantic": batch["parts"]}, batch_idx)


def vit(args, pretrained: str | None = None) -> ViT:
    return ViT(embed_dim=args.dim, depth=args.depth, num_heads=args.heads, patch_size=args.patch,
               img_size=args.size, pretrained=pretrained)


def data(args, modalities: list[str], seed: int) -> SyntheticScenesDataModule:
    return SyntheticScenesDataModule(modalities=modalities, size=args.size, batch_size=args.batch,
                                     train_samples=args.train_samples, val_samples=args.val_samples, seed=seed)


def trainer(steps: int, callbacks=()) -> Trainer:
    return Trainer(accelerator="cpu", devices=1, max_steps=steps, logger=False, enable_checkpointing=False,
                   enable_progress_bar=False, enable_model_summary=False, num_sanity_val_steps=0,
                   limit_val_batches=0, callbacks=list(callbacks))


def pretrain(args, path: Path) -> float:
    seed_everything(0)
    model = PartSegmentation(vit(args), num_classes=NUM_PARTS, head=args.head, lr=args.lr,
                                 warmup_steps=args.pretrain_steps // 10)
    t = time.perf_counter()
    trainer(args.pretrain_steps).fit(model, datamodule=data(args, ["image", "parts"], seed=100))
    save_checkpoint(model.backbone, path)
    return time.perf_counter() - t


def run(args, task: str, name: str, ckpt: Path) -> dict:
    seed_everything(1)
    tuner = TUNERS[name]()
    common = dict(tuner=tuner, head=args.head, lr=args.lr, warmup_steps=args.steps // 10, min_lr=args.lr / 100)
    if task == "segmentation":
        model = SemanticSegmentation(vit(args, str(ckpt)), num_classes=NUM_CLASSES, **common)
        dm = data(args, ["image", "semantic"], seed=0)
    else:
        model = DepthEstimation(vit(args, str(ckpt)), max_depth=12.0, **common)
        dm = data(args, ["image", "depth"], seed=0)
    stats = tuner.trainable_parameters(model.backbone)
    timer = StepTimer()
    tr = trainer(args.steps, [timer])
    tr.fit(model, datamodule=dm)
    tr.limit_val_batches = 1.0
    metrics = tr.validate(model, datamodule=dm, verbose=False)[0]
    step_ms = 1000 * statistics.mean(timer.times[5:] or timer.times)
    return {"task": task, "tuner": name, "metrics": metrics, "step_ms": step_ms, **stats}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--tasks", nargs="+", default=["segmentation", "depth"], choices=["segmentation", "depth"])
    p.add_argument("--tuners", nargs="+", default=list(TUNERS), choices=list(TUNERS))
    p.add_argument("--steps", type=int, default=200, help="training steps per tuner and task")
    p.add_argument("--pretrain-steps", type=int, default=400)
    p.add_argument("--size", type=int, default=64)
    p.add_argument("--patch", type=int, default=8)
    p.add_argument("--dim", type=int, default=64)
    p.add_argument("--depth", type=int, default=4)
    p.add_argument("--heads", type=int, default=2)
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--head", default="linear", choices=["linear", "dpt", "pup"])
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--train-samples", type=int, default=960)
    p.add_argument("--val-samples", type=int, default=128)
    p.add_argument("--threads", type=int, default=1,
                   help="torch threads (1: on a shared 2-core machine two threads spin and run 3x slower)")
    args = p.parse_args()
    torch.set_num_threads(args.threads)

    start = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        ckpt = Path(tmp) / "backbone.pth"
        secs = pretrain(args, ckpt)
        print(f"pretrained on part segmentation: {args.pretrain_steps} steps, {secs:.0f} s", flush=True)
        rows = []
        for task in args.tasks:
            for name in args.tuners:
                r = run(args, task, name, ckpt)
                rows.append(r)
                m = r["metrics"]
                metric = (f"mIoU {100 * m['val/mIoU']:.1f}" if task == "segmentation"
                          else f"AbsRel {m['val/abs_rel']:.3f} RMSE {m['val/rmse']:.3f}")
                print(f"{task:12s} {name:12s} {metric}  trainable {r['trainable']:,} "
                      f"({r['percent_of_base']:.2f} %)  {r['step_ms']:.0f} ms/step", flush=True)

    print(f"\nViT {args.dim}-d x {args.depth} blocks, patch {args.patch}, {args.size} px, batch {args.batch}, "
          f"{args.head} head, lr {args.lr:g}, {args.steps} steps per run; total {time.perf_counter() - start:.0f} s\n")
    print("| task | tuner | val metric | trainable backbone params | % of backbone | step ms |")
    print("|---|---|---|---:|---:|---:|")
    for r in rows:
        m = r["metrics"]
        metric = (f"mIoU {100 * m['val/mIoU']:.1f}" if r["task"] == "segmentation"
                  else f"AbsRel {m['val/abs_rel']:.3f} / RMSE {m['val/rmse']:.3f}")
        print(f"| {r['task']} | {r['tuner']} | {metric} | {r['trainable']:,} | {r['percent_of_base']:.2f} | "
              f"{r['step_ms']:.0f} |")


if __name__ == "__main__":
    main()
