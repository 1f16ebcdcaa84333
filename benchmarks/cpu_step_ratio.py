"""What vitlab's plumbing costs per training step: a shipped config through the CLI vs a plain loop of the same math.

The vitlab arm is what ``vitlab fit --config <config>`` runs: the CLI's Trainer with the config's callbacks, the
injected run defaults (non-finite guard, progress, checkpointing, preemption), the W&B logger (offline) and the
config's DataModule (seeded samples, uint8 transfer, normalisation in ``on_after_batch_transfer``). The plain arm is
a bare PyTorch loop written here: a ``DataLoader`` over the same dataset, ImageNet normalisation by hand, the
network's forward and loss, ``backward``, an optimizer of the same class and hyperparameters over the same
parameter groups (a copy of the network), a ``LambdaLR``; no Lightning, no callbacks, no logging. For DACS the
plain arm writes the iteration out itself (EMA teacher by ``torch._foreach_lerp_``, source CE, pseudo-labels,
ClassMix, strong augmentation, mixed CE) from the pure functions of :mod:`vitlab.uda.transforms`.

The arms are interleaved step by step in one process (a callback runs one plain step after every vitlab step),
so machine load falls on both alike. Reported per config: median step time of each arm (warm-up excluded), the
median and the mean of the per-step ratios vitlab / plain (the mean includes logging steps).

    python benchmarks/cpu_step_ratio.py --steps 30 --warmup 5 --threads 1
    python benchmarks/cpu_step_ratio.py --only mae --steps 4 --warmup 1       # a quick look
"""

from __future__ import annotations

import argparse
import copy
import inspect
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import torch
import torch.nn.functional as F
from lightning.pytorch import Callback
from torch.utils.data import DataLoader

REPO = Path(__file__).resolve().parents[1]
MEAN = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
STD = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)

#: name -> shipped config
CONFIGS = {
    "mae": "configs/pretrain/quickstart.yaml",
    "tadformer": "configs/mtl/tadformer_quickstart.yaml",
    "dacs": "configs/uda/quickstart.yaml",
}


def _normalise(batch: dict) -> dict:
    """ImageNet normalisation by hand, as a plain training script does."""
    out = {}
    for k, v in batch.items():
        if isinstance(v, dict):
            out[k] = _normalise(v)
        elif k in ("image", "right") and torch.is_tensor(v):
            x = v.float() / 255 if v.dtype == torch.uint8 else v
            out[k] = (x - MEAN) / STD
        else:
            out[k] = v
    return out


def _loader(dataset, batch_size: int, collate) -> Callable[[], dict]:
    """An endless plain ``DataLoader`` (shuffled, no workers)."""
    loader = DataLoader(dataset, batch_size=batch_size, shuffle=True, drop_last=True, collate_fn=collate)
    it = iter(loader)

    def fetch() -> dict:
        nonlocal it
        try:
            return next(it)
        except StopIteration:
            it = iter(loader)
            return next(it)

    return fetch


def _same_optimizer(vopt: torch.optim.Optimizer, vnet: torch.nn.Module, net: torch.nn.Module):
    """An optimizer of ``vopt``'s class and hyperparameters over the same groups of ``net``'s parameters."""
    names = {id(p): n for n, p in vnet.named_parameters()}
    mine = dict(net.named_parameters())
    groups = [{**{k: v for k, v in g.items() if k != "params"}, "params": [mine[names[id(p)]] for p in g["params"]]}
              for g in vopt.param_groups]
    accepted = inspect.signature(type(vopt)).parameters
    opt = type(vopt)(groups, **{k: v for k, v in vopt.defaults.items() if k in accepted})
    return opt, torch.optim.lr_scheduler.LambdaLR(opt, lambda step: 1.0)


def plain_mae(module, dm, vopt) -> Callable[[], None]:
    net = copy.deepcopy(module).train()
    opt, sched = _same_optimizer(vopt, module, net)
    fetch = _loader(dm.make_dataset("train"), dm.batch_size, dm.collate_fn("train"))

    def step() -> None:
        batch = _normalise(fetch())
        losses, _, _ = net(batch)
        opt.zero_grad(set_to_none=True)
        losses["loss"].backward()
        opt.step()
        sched.step()

    return step


def plain_multitask(module, dm, vopt) -> Callable[[], None]:
    # SyntheticScenes keys -> the task names (semantic -> semseg, ...), as the DataModule renames them
    from vitlab.mtl.data import _SYNTH_KEYS

    net = copy.deepcopy(module).train()
    opt, sched = _same_optimizer(vopt, module, net)
    fetch = _loader(dm.make_dataset("train"), dm.batch_size, dm.collate_fn("train"))

    def step() -> None:
        batch = {_SYNTH_KEYS.get(k, k): v for k, v in _normalise(fetch()).items()}
        total, _ = net.criterion(net(batch["image"]), batch)
        opt.zero_grad(set_to_none=True)
        total.backward()
        opt.step()
        sched.step()

    return step


def plain_dacs(module, dm, vopt) -> Callable[[], None]:
    """DACS written out (DAFormer ``dacs.py`` order): EMA update, source CE, pseudo-labels, ClassMix, mixed CE."""
    from vitlab.uda import transforms as T

    student = copy.deepcopy(module.model).train()
    teacher = copy.deepcopy(module.teacher.teacher).train()
    for p in teacher.parameters():
        p.requires_grad_(False)
    opt, sched = _same_optimizer(vopt, module, _Wrap(student))
    data = dm.make_dataset("train")
    src = _loader(data["source"], dm.batch_size, None)
    tgt = _loader(data["target"], dm.batch_size, None)
    s_params, t_params = list(student.parameters()), list(teacher.parameters())
    alpha, threshold, classes = module.teacher.decay, module.pseudo_threshold, module.num_classes
    jitter = module.color_jitter
    gen = torch.Generator().manual_seed(0)

    def step() -> None:
        s, t = _normalise(src()), _normalise(tgt())
        xs, ys, xt = s["image"], s["semantic"], t["image"]
        with torch.no_grad():
            torch._foreach_lerp_(t_params, s_params, 1 - alpha)
        opt.zero_grad(set_to_none=True)
        F.cross_entropy(student(xs), ys, ignore_index=255).backward()
        with torch.no_grad():
            pl, _, pw = T.pseudo_label(teacher(xt), threshold)
        masks = T.class_mix_masks(ys, classes, True, generator=gen)
        x_mix = T.strong_transform(T.mix(masks, xs, xt), *jitter, blur=module.blur, generator=gen)
        y_mix, w_mix = T.mix(masks, ys, pl), T.mix(masks, torch.ones_like(pw), pw)
        T.ce_loss(student(x_mix), y_mix, w_mix).backward()
        opt.step()
        sched.step()

    return step


class _Wrap(torch.nn.Module):
    """``student`` under the name ``model`` (the LightningModule's parameter names)."""

    def __init__(self, student: torch.nn.Module) -> None:
        super().__init__()
        self.model = student


PLAIN = {"mae": plain_mae, "tadformer": plain_multitask, "dacs": plain_dacs}


class Interleave(Callback):
    """After every vitlab step, one plain step; each arm's time per step."""

    def __init__(self, build: Callable) -> None:
        self.build, self.plain_step = build, None
        self.vitlab: list[float] = []
        self.plain: list[float] = []
        self.resume = 0.0

    def on_train_start(self, trainer, pl_module) -> None:
        self.plain_step = self.build(pl_module, trainer.datamodule, trainer.optimizers[0])

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        if not self.vitlab and not self.plain:
            self.resume = time.perf_counter()  # the first interval starts at the first batch

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        t0 = time.perf_counter()
        self.vitlab.append(t0 - self.resume)
        self.plain_step()
        t1 = time.perf_counter()
        self.plain.append(t1 - t0)
        self.resume = t1


def measure(name: str, steps: int, warmup: int, out: Path) -> dict:
    from vitlab.core.cli import build_cli

    args = ["--config", str(REPO / CONFIGS[name]), "--trainer.max_steps", str(steps + warmup),
            "--trainer.limit_val_batches", "0", "--trainer.num_sanity_val_steps", "0",
            "--trainer.accelerator", "cpu", "--trainer.devices", "1", "--trainer.default_root_dir", str(out / name),
            "--data.init_args.num_workers", "0"]
    cli = build_cli(args, run=False)
    timer = Interleave(PLAIN[name])
    cli.trainer.callbacks.append(timer)
    cli.trainer.fit(cli.model, datamodule=cli.datamodule)
    v, p = timer.vitlab[warmup:], timer.plain[warmup:]
    ratios = [a / b for a, b in zip(v, p, strict=True)]
    return {"config": CONFIGS[name], "steps": len(v), "vitlab_ms": 1e3 * statistics.median(v),
            "plain_ms": 1e3 * statistics.median(p), "median_ratio": statistics.median(ratios),
            "mean_ratio": statistics.fmean(v) / statistics.fmean(p), "ratios": ratios,
            "log_every": cli.trainer.log_every_n_steps}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--only", default=",".join(CONFIGS), help=f"comma-separated subset of {list(CONFIGS)}")
    ap.add_argument("--steps", type=int, default=30, help="timed steps per config (after the warm-up)")
    ap.add_argument("--warmup", type=int, default=5, help="untimed first steps")
    ap.add_argument("--threads", type=int, default=1, help="torch threads")
    ap.add_argument("--per-step", action="store_true", help="also print every step's ratio")
    args = ap.parse_args(argv)
    if args.steps < 1 or args.warmup < 1:
        ap.error("--steps and --warmup must be >= 1 (the first step builds lazy state in both arms)")
    os.environ.setdefault("WANDB_MODE", "offline")
    torch.set_num_threads(args.threads)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.only.split(","):
            if name not in CONFIGS:
                ap.error(f"--only: unknown {name!r}; choose from {list(CONFIGS)}")
            rows.append(measure(name, args.steps, args.warmup, Path(tmp)))
    print(f"\nCPU step time, vitlab (CLI, shipped config) vs plain loop, interleaved; {args.steps} steps after "
          f"{args.warmup} warm-up, {args.threads} thread(s), torch {torch.__version__}")
    print("| config | vitlab ms/step | plain ms/step | ratio (median of steps) | ratio (mean) |")
    print("|---|---:|---:|---:|---:|")
    for r in rows:
        print(f"| `{r['config']}` | {r['vitlab_ms']:.1f} | {r['plain_ms']:.1f} | {r['median_ratio']:.3f} | "
              f"{r['mean_ratio']:.3f} |")
    if args.per_step:
        for r in rows:
            print(f"{r['config']} (logs every {r['log_every']} steps):", " ".join(f"{x:.2f}" for x in r["ratios"]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
