"""Small-scale comparison of the pretrain methods under one budget (spec §7 protocol, scaled down).

Every method pre-trains the same ViT (same init seed) on the same rendered SyntheticScenes images for the same
number of epochs, batch size, peak lr (``base_lr`` set so that ``lr`` is equal across the /256 and /512 rules),
warmup and cosine schedule; each keeps its own recipe otherwise (mask generator, optimizer betas, loss). A
randomly initialised encoder is the floor. From the final weights, frozen features are evaluated with:

* linear-probe top-1 on the image-level ``label`` (5 shape families): logistic regression on mean-pooled patch
  tokens (standardised), full-batch AdamW, fixed iterations;
* a dense probe: ridge regression from each frozen patch token to the patch's mean log-depth; RMSE (log space)
  and delta<1.25 on the validation scenes.

Pre-training losses differ in kind between methods (norm-pix MSE, L1, extra terms), so ``loss_mim`` is comparable
only within a family (MAE-like / SimMIM-like). This scale is far below the papers' (hundreds of ImageNet
epochs): the table says nothing about those results.

    python benchmarks/pretrain_compare.py --epochs 6 --seeds 0
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
import torch.nn.functional as F
from lightning.pytorch import Callback, Trainer, seed_everything
from torch.utils.data import DataLoader, Dataset

from vitlab.core import ViT
from vitlab.core.data import SyntheticScenes
from vitlab.core.data.constants import IMAGENET_MEAN, IMAGENET_STD
from vitlab.pretrain import MAE, MTO, SGMIM, BlockRandomMask, NoiseMIM, RandomPatchMask, SalienceMask, SimMIM


def render(n: int, size: int, seed: int) -> dict[str, torch.Tensor]:
    ds = SyntheticScenes(num_samples=n, size=size, seed=seed, modalities=["image", "depth", "label"])
    items = [ds[i] for i in range(n)]
    out = {k: torch.stack([it[k] for it in items]) for k in ("image", "depth", "label")}
    mean = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)
    out["image"] = (out["image"] - mean) / std
    return out


class Tensors(Dataset):
    def __init__(self, data: dict[str, torch.Tensor]):
        self.data = data

    def __len__(self) -> int:
        return len(self.data["image"])

    def __getitem__(self, i):
        return {k: v[i] for k, v in self.data.items()}


class LossTracker(Callback):
    def __init__(self):
        self.epoch_losses: list[dict[str, float]] = []
        self._acc: dict[str, list[float]] = {}

    def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx):
        for k, v in trainer.callback_metrics.items():
            if k.startswith("train/loss"):
                self._acc.setdefault(k[6:], []).append(float(v))

    def on_train_epoch_end(self, trainer, module):
        self.epoch_losses.append({k: statistics.fmean(v) for k, v in self._acc.items()})
        self._acc = {}


def make_encoder(args) -> ViT:
    return ViT(embed_dim=args.dim, depth=args.depth, num_heads=args.heads, patch_size=args.patch, img_size=args.img,
               mask_token=True)


def build(name: str, args, batch: int):
    """Methods with the peak lr of every arm equal to args.lr (base_lr = lr * divisor / batch)."""
    common = dict(warmup_epochs=1, weight_decay=0.05)
    mae_lr = dict(base_lr=args.lr * 256 / batch, **common)
    sim_lr = dict(base_lr=args.lr * 512 / batch, **common)
    dec = dict(decoder_embed_dim=args.dim, decoder_depth=2, decoder_num_heads=4)
    block = BlockRandomMask(2 * args.patch, 0.6)  # 2x2 patches per cell, as 32-px cells on ViT/16
    start = max(1, round(0.25 * args.epochs))  # SBAM: random masking for the first 25% (100 of 400 ep)
    enc = make_encoder(args)
    if name == "MAE":
        return MAE(enc, RandomPatchMask(0.75), **dec, **mae_lr)
    if name == "SBAM (MAE)":
        return MAE(enc, SalienceMask(0.75, start_epoch=start), **dec, **mae_lr)
    if name == "MTO (MAE)":
        return MAE(enc, RandomPatchMask(0.75), mto=MTO(), **dec, **mae_lr)
    if name == "Noise-in-encoder":
        return NoiseMIM(enc, RandomPatchMask(0.75), **mae_lr)
    if name == "SimMIM":
        return SimMIM(enc, block, **sim_lr)
    if name == "MTO (SimMIM)":
        return SimMIM(enc, block, mto=MTO(), **sim_lr)
    if name == "SG-MIM":
        return SGMIM(enc, block, depth_scale=0.1, depth_embed_dim=32, **sim_lr)
    raise ValueError(name)


METHODS = ["MAE", "SBAM (MAE)", "MTO (MAE)", "Noise-in-encoder", "SimMIM", "MTO (SimMIM)", "SG-MIM"]


@torch.no_grad()
def features(encoder: ViT, images: torch.Tensor, bs: int = 128) -> torch.Tensor:
    encoder.eval()
    out = []
    for i in range(0, len(images), bs):
        t = encoder.forward_features(images[i : i + bs])
        out.append(t[:, encoder.num_prefix_tokens :])
    return torch.cat(out)  # (N, L, D)


def linear_probe(ftr, ytr, fva, yva, classes: int = 5, iters: int = 300) -> float:
    mu, sd = ftr.mean(0), ftr.std(0) + 1e-6
    ftr, fva = (ftr - mu) / sd, (fva - mu) / sd
    head = torch.nn.Linear(ftr.shape[1], classes)
    opt = torch.optim.AdamW(head.parameters(), lr=1e-2, weight_decay=1e-3)
    for _ in range(iters):
        opt.zero_grad()
        F.cross_entropy(head(ftr), ytr).backward()
        opt.step()
    return float((head(fva).argmax(1) == yva).float().mean())


def patch_depth(depth: torch.Tensor, p: int) -> torch.Tensor:
    """Mean log-depth per patch, (N, L)."""
    d = torch.where(torch.isfinite(depth), depth, torch.nan).clamp_min(1e-3).log()
    N, _, H, W = d.shape
    d = d.reshape(N, H // p, p, W // p, p).permute(0, 1, 3, 2, 4).reshape(N, (H // p) * (W // p), p * p)
    return d.nanmean(-1)


def depth_probe(ftr, dtr, fva, dva, ridge: float = 1.0) -> tuple[float, float]:
    X, y = ftr.reshape(-1, ftr.shape[-1]).double(), dtr.reshape(-1).double()
    Xv, yv = fva.reshape(-1, fva.shape[-1]).double(), dva.reshape(-1).double()
    ok, okv = torch.isfinite(y), torch.isfinite(yv)
    X, y, Xv, yv = X[ok], y[ok], Xv[okv], yv[okv]
    mu, sd = X.mean(0), X.std(0) + 1e-6
    X, Xv = (X - mu) / sd, (Xv - mu) / sd
    X1, Xv1 = F.pad(X, (0, 1), value=1.0), F.pad(Xv, (0, 1), value=1.0)
    w = torch.linalg.solve(X1.T @ X1 + ridge * torch.eye(X1.shape[1], dtype=X1.dtype), X1.T @ y)
    pred = Xv1 @ w
    rmse = float(((pred - yv) ** 2).mean().sqrt())
    delta = float((torch.maximum(pred - yv, yv - pred).exp() < 1.25).double().mean())
    return rmse, delta


def evaluate(encoder, data_tr, data_va, patch) -> dict[str, float]:
    ftr, fva = features(encoder, data_tr["image"]), features(encoder, data_va["image"])
    acc = linear_probe(ftr.mean(1), data_tr["label"], fva.mean(1), data_va["label"])
    rmse, delta = depth_probe(ftr, patch_depth(data_tr["depth"], patch), fva, patch_depth(data_va["depth"], patch))
    return {"probe_acc": acc, "depth_rmse": rmse, "depth_d1": delta}


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--epochs", type=int, default=6)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--lr", type=float, default=1.5e-3, help="peak lr of every arm")
    ap.add_argument("--train", type=int, default=1024)
    ap.add_argument("--val", type=int, default=256)
    ap.add_argument("--img", type=int, default=64)
    ap.add_argument("--patch", type=int, default=8)
    ap.add_argument("--dim", type=int, default=64)
    ap.add_argument("--depth", type=int, default=4)
    ap.add_argument("--heads", type=int, default=4)
    ap.add_argument("--seeds", type=int, nargs="+", default=[0])
    ap.add_argument("--methods", nargs="+", default=METHODS)
    ap.add_argument("--threads", type=int, default=0, help="torch intra-op threads (0 = torch default)")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    t0 = time.time()
    data_tr, data_va = render(args.train, args.img, 1000), render(args.val, args.img, 1001)
    print(f"rendered {args.train}+{args.val} scenes at {args.img}px in {time.time() - t0:.0f}s", flush=True)
    loader = DataLoader(Tensors(data_tr), batch_size=args.batch, shuffle=True, drop_last=True)
    rows: dict[str, list[dict[str, float]]] = {}
    for seed in args.seeds:
        seed_everything(seed, verbose=False)
        rows.setdefault("random init (no pre-training)", []).append(
            {**evaluate(make_encoder(args), data_tr, data_va, args.patch), "time": 0.0})
        for name in args.methods:
            seed_everything(seed, verbose=False)
            model = build(name, args, args.batch)
            tracker = LossTracker()
            trainer = Trainer(accelerator="cpu", devices=1, max_epochs=args.epochs, logger=False,
                              enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
                              callbacks=[tracker], num_sanity_val_steps=0, limit_val_batches=0,
                              gradient_clip_val=5.0 if "SimMIM" in name or "SG" in name else None)
            t = time.time()
            trainer.fit(model, loader)
            elapsed = time.time() - t
            last = tracker.epoch_losses[-1]
            res = {"loss": last["loss"], "loss_mim": last.get("loss_mim", last["loss"]),
                   "loss_first": tracker.epoch_losses[0].get("loss_mim", tracker.epoch_losses[0]["loss"]),
                   **evaluate(model.encoder, data_tr, data_va, args.patch), "time": elapsed}
            rows.setdefault(name, []).append(res)
            print(f"seed {seed} {name}: " + ", ".join(f"{k} {v:.4f}" for k, v in res.items()), flush=True)

    def fmt(vals, digits):
        m = statistics.fmean(vals)
        return f"{m:.{digits}f} ± {statistics.stdev(vals):.{digits}f}" if len(vals) > 1 else f"{m:.{digits}f}"

    print(f"\nViT {args.dim}-d x {args.depth} blocks, patch {args.patch}, {args.img}px; {args.epochs} epochs x "
          f"{args.train // args.batch} steps, batch {args.batch}, peak lr {args.lr}; seeds {args.seeds}; "
          f"total {time.time() - t0:.0f}s\n")
    print("| method | loss_mim epoch 1 → last | total loss (last epoch) | linear probe top-1 (label) | "
          "patch log-depth RMSE ↓ | depth δ<1.25 ↑ | pre-train time (s) |")
    print("|---|---|---|---|---|---|---|")
    for name, rs in rows.items():

        def col(k, d=3, rs=rs):
            return fmt([r[k] for r in rs], d)

        if "loss" in rs[0]:
            losses = f"{col('loss_first')} → {col('loss_mim')}"
            total = col("loss")
        else:
            losses = total = "—"
        print(f"| {name} | {losses} | {total} | {col('probe_acc')} | {col('depth_rmse')} | {col('depth_d1')} | "
              f"{col('time', 0)} |")


if __name__ == "__main__":
    main()
