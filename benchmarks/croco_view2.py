"""Does a CroCo checkpoint complete view 1 from view 2? Masked-patch loss on held-back SyntheticStereo pairs.

    python benchmarks/croco_view2.py --ckpt runs/pretrain-croco/version_0/checkpoints/last.ckpt [--pairs 64]

Evaluates the norm-pix MSE on the masked patches of view 1 (the pre-training loss, same masks in every row) with
view 2 = the true right view, = the right view of another pair (a wrong scene), = view 1 itself shifted by 0 px
(zero disparity), and with view 2 = zeros. A model that learned cross-view completion scores clearly best with the
true view 2; predicting 0 for every normalised patch scores about 1.0. The pairs are the test split of
``SyntheticStereoDataModule(seed)`` (dataset seed ``16 * seed + 2``), never seen in training.
"""

from __future__ import annotations

import argparse

import torch

from vitlab.core.data import SyntheticStereo
from vitlab.core.data.constants import IMAGENET_MEAN, IMAGENET_STD
from vitlab.pretrain import CroCo


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--ckpt", required=True, help="Lightning checkpoint of vitlab.pretrain.CroCo (from vitlab fit)")
    ap.add_argument("--pairs", type=int, default=64)
    ap.add_argument("--size", type=int, nargs=2, default=[64, 128])
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--batch", type=int, default=16)
    args = ap.parse_args()
    torch.set_num_threads(1)
    model = CroCo.load_from_checkpoint(args.ckpt, map_location="cpu").eval()
    ds = SyntheticStereo(args.pairs, size=tuple(args.size), seed=args.seed * 16 + 2, modalities=["image", "right"])
    mean, std = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)
    rows = {"true view 2": [], "view 2 of another pair": [], "view 2 = view 1": [], "view 2 = zeros": []}
    for start in range(0, len(ds), args.batch):
        items = [ds[i] for i in range(start, min(start + args.batch, len(ds)))]
        left = (torch.stack([s["image"] for s in items]) - mean) / std
        right = (torch.stack([s["right"] for s in items]) - mean) / std
        views = {"true view 2": right, "view 2 of another pair": right.roll(1, dims=0), "view 2 = view 1": left,
                 "view 2 = zeros": torch.zeros_like(right)}
        for name, v2 in views.items():
            torch.manual_seed(start)  # the same masks for every row
            with torch.no_grad():
                rows[name].append(float(model({"image": left, "right": v2})[0]["loss"]) * len(items))
    print(f"{args.ckpt}: masked-patch norm-pix MSE on {len(ds)} held-back pairs")
    for name, vals in rows.items():
        print(f"  {name:24s} {sum(vals) / len(ds):.4f}")


if __name__ == "__main__":
    main()
