"""Synthetic source -> target adaptation: target mIoU of source-only, DAFormer, DAFormer + MIC, CLDA and
plain KD on SyntheticScenes (source-style vs target-style rendering), same budget, several seeds.

    python benchmarks/uda_synthetic.py --steps 600 --seeds 0 1 2 --out uda_synthetic.json

CPU-sized: 32-px scenes, MiT encoders of a few hundred thousand parameters, one thread. Prints one line
per run and a summary (mean and spread over seeds) and writes every number to ``--out``.
"""

from __future__ import annotations

import argparse
import json
import time

import lightning.pytorch as pl
import torch

from vitlab.core import MiT
from vitlab.core.data import SyntheticScenesDataModule
from vitlab.uda import CLDA, DACS, SourceOnly

COMMON = dict(num_classes=7, lr=1e-3, warmup_steps=20, head_kwargs={"embed_dim": 32})
ST = dict(alpha=0.99, pl_crop_top=0, pl_crop_bottom=0, fd_lambda=0.0, mic_block_size=8)


def big() -> MiT:
    return MiT("b1", embed_dims=(32, 64, 128, 256), depths=(2, 2, 2, 2), num_heads=(1, 2, 4, 8), drop_path_rate=0.0)


def small() -> MiT:
    return MiT("b0", embed_dims=(8, 16, 32, 64), depths=(1, 1, 1, 1), num_heads=(1, 2, 4, 8), drop_path_rate=0.0)


def build(method: str, steps: int, seed: int):
    k = steps // 4
    clda = dict(student_backbone=small(), student_head_kwargs={"embed_dim": 16}, recompute_every=k,
                saliency_batches=5, phase_steps=k // 2 or 1, **ST, **COMMON)
    if method == "source_only":
        return SourceOnly(small(), **COMMON, rng_seed=seed)
    if method == "daformer":
        return DACS(small(), **ST, **COMMON, rng_seed=seed)
    if method == "daformer_mic":
        return DACS(small(), mic=True, **ST, **COMMON, rng_seed=seed)
    if method == "clda":
        return CLDA(big(), rng_seed=seed, **clda)
    if method == "plain_kd":
        return CLDA(big(), collaborate=False, rng_seed=seed, **clda)
    raise ValueError(method)


def run(method: str, steps: int, seed: int) -> dict:
    pl.seed_everything(seed, workers=True)
    dm = SyntheticScenesDataModule(modalities=["image", "semantic"], size=32, batch_size=8, train_samples=512,
                                   val_samples=96, seed=seed, domain="source", target_domain="target")
    model = build(method, steps, seed)
    trainer = pl.Trainer(max_steps=steps, accelerator="cpu", logger=False, enable_checkpointing=False,
                         enable_progress_bar=False, enable_model_summary=False, num_sanity_val_steps=0,
                         check_val_every_n_epoch=10_000)
    t0 = time.time()
    trainer.fit(model, dm)
    dm.setup("validate")
    out = trainer.validate(model, dm.val_dataloader(), verbose=False)[0]
    res = {"method": method, "seed": seed, "steps": steps, "seconds": round(time.time() - t0, 1),
           **{k: round(float(v), 4) for k, v in out.items() if k.endswith("mIoU")}}
    if method == "clda":
        r = model.report_lsr_below
        res["teacher_lsr_mean"] = float(model.t_lsr.mean())
        res["student_lsr_mean"] = float(model.s_lsr.mean())
        res[f"teacher_frac_layers_lsr_below_{r}"] = float((model.t_lsr < r).float().mean())
        res[f"student_frac_layers_lsr_below_{r}"] = float((model.s_lsr < r).float().mean())
    if method == "source_only":  # the same network on the source domain: the size of the domain gap
        dm_src = SyntheticScenesDataModule(modalities=["image", "semantic"], size=32, batch_size=8,
                                           train_samples=512, val_samples=96, seed=seed, domain="source")
        dm_src.setup("validate")
        res["source_domain_mIoU"] = round(float(trainer.validate(model, dm_src, verbose=False)[0]["val/mIoU"]), 4)
    return res


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=120)
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    ap.add_argument("--methods", nargs="+", default=["source_only", "daformer", "daformer_mic", "clda", "plain_kd"])
    ap.add_argument("--out", default="uda_synthetic.json")
    args = ap.parse_args()
    torch.set_num_threads(1)
    results = []
    for seed in args.seeds:
        for m in args.methods:
            results.append(run(m, args.steps, seed))
            print(json.dumps(results[-1]), flush=True)
            with open(args.out, "w") as f:
                json.dump(results, f, indent=1)
    keys = sorted({k for r in results for k in r if "mIoU" in k or "lsr" in k})
    for m in args.methods:
        rows = [r for r in results if r["method"] == m]
        summary = {k: [r[k] for r in rows if k in r] for k in keys}
        print(m, {k: (round(sum(v) / len(v), 4), round(max(v) - min(v), 4)) for k, v in summary.items() if v})


if __name__ == "__main__":
    main()
