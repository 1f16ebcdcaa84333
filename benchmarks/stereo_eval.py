"""Evaluate a stereo model (or a classical baseline) on a folder of pairs; print a per-scene table.

    python benchmarks/stereo_eval.py --layout eth3d --root path/to/eth3d --method sgbm
    python benchmarks/stereo_eval.py --layout kitti2015 --root path/to/data_scene_flow \\
        --config configs/stereo/croco_stereo.yaml --ckpt runs/.../last.ckpt --tile 352 704
    python benchmarks/stereo_eval.py --layout synthetic --method zero        # lower bound: predict 0
    python benchmarks/stereo_eval.py --layout synthetic --config configs/stereo/quickstart.yaml \
        --ckpt runs/stereo_quickstart/version_0/checkpoints/last.ckpt --swap-right left   # matching ablation

Methods: ``model`` (a LightningCLI config + checkpoint of any vitlab stereo module; tiled inference when
``--tile`` is given), ``sgbm`` (OpenCV StereoSGBM, needs opencv-python-headless; holes filled with 0) and
``zero`` (disparity 0 everywhere) and ``constant`` (``--constant`` px everywhere: the best a predictor that
neither matches nor uses image content can do is the GT median). Columns: EPE (px), bad-1 / bad-2 (%), KITTI D1 (%), per image over valid
GT; the last row is the mean over images.

``--layout synthetic`` evaluates held-back :class:`~vitlab.core.data.SyntheticStereo` pairs (the test split,
dataset seed ``16 * seed + 2``, never seen in training or checkpoint selection); ``synthetic-scenes`` the old
SyntheticScenes val split. ``--swap-right left`` replaces the right view by the left one: a model that
matches then sees zero disparity everywhere and its EPE rises towards the mean GT disparity, while a model
that reads disparity off the left image alone scores the same as without the swap.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from vitlab.core.data.constants import IMAGENET_MEAN, IMAGENET_STD
from vitlab.stereo import (
    ETH3DStereo,
    KITTIStereo,
    MiddleburyStereo,
    SceneFlowStereo,
    StereoMetrics,
    tiled_predict,
)

LAYOUTS = ("sceneflow", "kitti2012", "kitti2015", "eth3d", "middlebury2001", "middlebury2003", "middlebury2005",
           "middlebury2006", "middlebury2014", "middleburyv2", "middeval3", "synthetic", "synthetic-scenes")


def build_dataset(args):
    if args.layout == "sceneflow":
        return SceneFlowStereo(args.root, split=args.split or "test", passes=args.passes)
    if args.layout.startswith("kitti"):
        return KITTIStereo(args.root, year=int(args.layout[-4:]), split=args.split or "train")
    if args.layout == "eth3d":
        return ETH3DStereo(args.root, split=args.split or "train")
    if args.layout.startswith("midd"):
        version = "eval3" if args.layout == "middeval3" else args.layout[len("middlebury"):]
        return MiddleburyStereo(args.root, version=version, split=args.split or "train")
    from vitlab.core.data import SyntheticScenes, SyntheticStereo

    if args.layout == "synthetic":
        ds = SyntheticStereo(args.max_pairs or 64, size=tuple(args.size), seed=args.seed * 16 + 2)
    else:
        ds = SyntheticScenes(args.max_pairs or 64, size=tuple(args.size), seed=args.seed * 16 + 1,
                             modalities=["image", "right", "disparity", "occlusion"])

    class Named(torch.utils.data.Dataset):
        def __len__(self):
            return len(ds)

        def __getitem__(self, i):
            s = ds[i]
            s["name"] = f"synthetic/{i:04d}"
            return s

    return Named()


def sgbm(left: torch.Tensor, right: torch.Tensor, num_disp: int, block: int) -> torch.Tensor:
    import cv2

    to8 = lambda x: cv2.cvtColor((x.permute(1, 2, 0).numpy() * 255).astype(np.uint8), cv2.COLOR_RGB2GRAY)  # noqa: E731
    m = cv2.StereoSGBM_create(minDisparity=0, numDisparities=num_disp, blockSize=block, P1=8 * block * block,
                              P2=32 * block * block, uniquenessRatio=10, speckleWindowSize=100, speckleRange=2,
                              disp12MaxDiff=1, mode=cv2.STEREO_SGBM_MODE_SGBM_3WAY)
    d = m.compute(to8(left), to8(right)).astype(np.float32) / 16.0
    d[d < 0] = 0.0
    return torch.from_numpy(d)[None, None]


def load_model(config: str, ckpt: str | None):
    from vitlab.core.cli import build_cli

    cli = build_cli(["--config", config, "--trainer.logger", "false", "--trainer.callbacks", "[]",
                     "--trainer.accelerator", "cpu"], run=False)
    model = cli.model
    if ckpt:
        state = torch.load(ckpt, map_location="cpu", weights_only=False)["state_dict"]
        model.load_state_dict(state)
    return model.eval()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--layout", choices=LAYOUTS, required=True)
    ap.add_argument("--root", default=None)
    ap.add_argument("--split", default=None)
    ap.add_argument("--passes", nargs="+", default=["final"], help="sceneflow render passes (clean, final)")
    ap.add_argument("--method", choices=("model", "sgbm", "zero", "constant"), default="model")
    ap.add_argument("--constant", type=float, default=0.0, help="disparity of method=constant (px)")
    ap.add_argument("--config", default=None, help="LightningCLI config of the model (method=model)")
    ap.add_argument("--ckpt", default=None, help="Lightning checkpoint (method=model)")
    ap.add_argument("--tile", type=int, nargs=2, default=None, help="tiled inference window H W")
    ap.add_argument("--scale", type=float, default=1.0,
                    help="full-frame inference on views resized by this factor (see vitlab.stereo.suggest_scale)")
    ap.add_argument("--overlap", type=float, default=0.7)
    ap.add_argument("--num-disparities", type=int, default=128, help="SGBM search range (multiple of 16)")
    ap.add_argument("--block-size", type=int, default=5)
    ap.add_argument("--max-pairs", type=int, default=None)
    ap.add_argument("--size", type=int, nargs=2, default=[64, 128], help="synthetic pair size")
    ap.add_argument("--seed", type=int, default=0, help="synthetic: the held-back split of this DataModule seed")
    ap.add_argument("--swap-right", choices=("none", "left"), default="none",
                    help="ablation: 'left' feeds the left view as the right one (a matching model must fail)")
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = ap.parse_args()
    if not args.layout.startswith("synthetic") and not args.root:
        ap.error("--root is required for real layouts")
    ds = build_dataset(args)
    model = load_model(args.config, args.ckpt).to(args.device) if args.method == "model" else None
    mean = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1).to(args.device)
    std = torch.tensor(IMAGENET_STD).view(1, 3, 1, 1).to(args.device)
    total = StereoMetrics("image")
    n = min(len(ds), args.max_pairs or len(ds))
    print(f"{'scene':44s} {'EPE':>8s} {'bad-1':>8s} {'bad-2':>8s} {'D1':>8s}")
    t0 = time.time()
    for i in range(n):
        s = ds[i]
        if args.swap_right == "left":
            s["right"] = s["image"]
        gt = s["disparity"][None]
        if args.method in ("zero", "constant"):
            pred = torch.full_like(gt, args.constant if args.method == "constant" else 0.0)
        elif args.method == "sgbm":
            pred = sgbm(s["image"], s["right"], args.num_disparities, args.block_size)
        else:
            left = (s["image"][None].to(args.device) - mean) / std
            right = (s["right"][None].to(args.device) - mean) / std
            with torch.no_grad():
                if args.tile:
                    pred, _ = tiled_predict(model.net, left, right, args.tile, args.overlap, model.conf_mode)
                else:  # full frame at --scale, disparity brought back to the input resolution
                    pred, _ = model.predict_disparity(left, right, scale=args.scale, tiled=False)
            pred = pred.cpu()
        m = StereoMetrics("image")
        m.update(pred, gt)
        r = m.compute()
        total.update(pred, gt)
        print(f"{s['name'][:44]:44s} {r['epe']:8.3f} {r['bad1']:8.2f} {r['bad2']:8.2f} {r['d1']:8.2f}")
    r = total.compute()
    print(f"{'mean (' + str(n) + ' pairs)':44s} {r['epe']:8.3f} {r['bad1']:8.2f} {r['bad2']:8.2f} {r['d1']:8.2f}")
    swap = ", right = left" if args.swap_right == "left" else ""
    print(f"# {args.method} on {args.layout}{swap}: {n} pairs in {time.time() - t0:.1f} s")


if __name__ == "__main__":
    main()
