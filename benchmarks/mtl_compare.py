"""Single-task vs MTL full fine-tuning vs MTLoRA r=16 vs TADFormer r=16 on synthetic multi-task scenes.

Same budget for every method (steps, batch, lr schedule, data order), small Swin (C=16, depths 2-2-2-2, random
init: no pretrained weights exist for this size, so the PEFT methods adapt a *random* frozen backbone; this
checks the mechanics and relative behaviour, not the paper's pretrained regime). One thread.

    python benchmarks/mtl_compare.py --steps 150 --seeds 0 1
"""

from __future__ import annotations

import argparse
import json
import math
import time

import torch

from vitlab.core import Swin
from vitlab.core.data import SyntheticScenes
from vitlab.core.data.constants import imagenet_normalize
from vitlab.mtl import MTLoRA, MultiTaskFineTune, TADFormer

TASKS = ["semseg", "human_parts", "sal", "normals"]
KEYS = {"semantic": "semseg", "parts": "human_parts", "saliency": "sal", "normals": "normals", "image": "image"}
OUTS = {"semseg": 7, "human_parts": 3}


def load(n: int, seed: int, size: int) -> list[dict]:
    ds = SyntheticScenes(n, size=size, seed=seed, modalities=["image", "semantic", "parts", "saliency", "normals"])
    return [{KEYS[k]: v for k, v in ds[i].items() if k in KEYS} for i in range(n)]


def batches(data: list[dict], bs: int, seed: int):
    g = torch.Generator().manual_seed(seed)
    while True:
        perm = torch.randperm(len(data), generator=g).tolist()
        for i in range(0, len(perm) - bs + 1, bs):
            items = [data[j] for j in perm[i:i + bs]]
            yield imagenet_normalize({k: torch.stack([it[k] for it in items]) for k in items[0]}, keys=("image",))


def swin(size: int, seed: int) -> Swin:
    torch.manual_seed(seed)
    return Swin(img_size=size, embed_dim=16, depths=(2, 2, 2, 2), num_heads=(2, 2, 4, 4), drop_path_rate=0.0)


def build(method: str, tasks: list[str], size: int, seed: int):
    bb = swin(size, seed)
    torch.manual_seed(seed + 1000)
    kw = dict(num_outputs=OUTS)
    if method == "mtlora":
        return MTLoRA(bb, tasks, rank=16, **kw)
    if method == "tadformer":
        return TADFormer(bb, tasks, rank=16, **kw)
    return MultiTaskFineTune(bb, tasks, **kw)


def run(method: str, tasks: list[str], train, val, args, seed: int) -> dict:
    m = build(method, tasks, args.size, seed)
    params = [p for p in m.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=args.lr, weight_decay=0.05)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 0.5 * (1 + math.cos(math.pi * s / args.steps)))
    it = batches(train, args.batch, seed)
    m.train()
    t0 = time.perf_counter()
    for _ in range(args.steps):
        b = next(it)
        loss, _ = m.criterion(m(b["image"]), b)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 5.0)
        opt.step()
        sched.step()
    train_s = time.perf_counter() - t0
    m.eval()
    with torch.no_grad():
        for i in range(0, len(val), args.batch):
            items = val[i:i + args.batch]
            b = imagenet_normalize({k: torch.stack([it[k] for it in items]) for k in items[0]}, keys=("image",))
            out = m(b["image"])
            for t in tasks:
                m.val_metrics[t].update(out[t], b[t])
    values = {k: float(v) for k, v in m.compute_metrics(m.val_metrics).items()}
    return {"values": values, "trainable": sum(p.numel() for p in params), "train_s": train_s}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=150)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--size", type=int, default=64)
    ap.add_argument("--lr", type=float, default=2e-3)
    ap.add_argument("--train", type=int, default=400)
    ap.add_argument("--val", type=int, default=64)
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    ap.add_argument("--out", default=None)
    args = ap.parse_args()
    torch.set_num_threads(1)
    train, val = load(args.train, 100, args.size), load(args.val, 101, args.size)
    primary = {"semseg": "mIoU", "human_parts": "mIoU", "sal": "maxIoU", "normals": "mean"}
    results: dict = {"args": vars(args), "runs": []}
    for seed in args.seeds:
        single = {}
        for t in TASKS:
            r = run("single", [t], train, val, args, seed)
            single[t] = r["values"][f"{t}/{primary[t]}"]
            results["runs"].append({"method": f"single:{t}", "seed": seed, **r})
            print(f"seed {seed} single {t}: {single[t]:.2f} ({r['trainable']} params, {r['train_s']:.0f}s)", flush=True)
        ref = dict(single)
        for method in ("mtl_ft", "mtlora", "tadformer"):
            r = run(method, TASKS, train, val, args, seed)
            from vitlab.mtl.metrics import delta_m
            vals = {t: r["values"][f"{t}/{primary[t]}"] for t in TASKS}
            r["delta_m"] = delta_m(vals, ref)
            results["runs"].append({"method": method, "seed": seed, **r})
            print(f"seed {seed} {method}: " + " ".join(f"{t} {v:.2f}" for t, v in vals.items())
                  + f" Δm {r['delta_m']:+.2f} ({r['trainable']} params, {r['train_s']:.0f}s)", flush=True)
    if args.out:
        with open(args.out, "w") as f:
            json.dump(results, f, indent=1)


if __name__ == "__main__":
    main()
