"""Full-frame vs tiled inference of a stereo checkpoint on real pairs: seconds per megapixel and accuracy.

    python benchmarks/stereo_predict_modes.py --ckpt runs/stereo_quickstart/version_0/checkpoints/last.ckpt \\
        --data ../shared/data --scales 1.0 0.5 --threads 1

Each pair is run through :func:`vitlab.stereo.predict_disparity` with ``tiled=False`` (one forward of the whole
frame, padded to a multiple of 32) and ``tiled=True`` (windows of the training crop, ``--tile`` or the
network's ``img_size``, overlap ``--overlap``), at every ``--scale``. Columns: input megapixels, wall seconds
per input megapixel (best of ``--repeats``), EPE / bad-2 (%) over valid GT at full resolution. Pairs: the real
samples whose layout the stereo readers know (ETH3D, KITTI 2012/2015, Middlebury 2006), one each.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import torch

from vitlab.stereo import ETH3DStereo, KITTIStereo, MiddleburyStereo, StereoMatching, predict_disparity


def real_pairs(data: Path) -> list[tuple[str, object]]:
    out = []
    for tag, make in (
        ("ETH3D terrace", lambda: ETH3DStereo(str(data / "eth3d_tum_cvc2019"))),
        ("KITTI 2015 000000", lambda: KITTIStereo(str(data / "kitti2015" / "data_scene_flow"), year=2015)),
        ("KITTI 2012 000000", lambda: KITTIStereo(str(data / "kitti2012" / "data_stereo_flow"), year=2012)),
        ("Middlebury 2006 Wood2 (half)", lambda: MiddleburyStereo(str(data / "middlebury2006" / "HalfSize"),
                                                                  version="2006", size="half")),
    ):
        try:
            out.append((tag, make()[0]))
        except (FileNotFoundError, ValueError) as e:
            print(f"skip {tag}: {e}")
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--ckpt", required=True, help="checkpoint of a StereoMatching module")
    ap.add_argument("--data", default="../shared/data", help="folder holding the real samples")
    ap.add_argument("--scales", type=float, nargs="+", default=[1.0, 0.5])
    ap.add_argument("--tile", type=int, nargs=2, default=None, help="tiled window H W (default: tile_size or img_size)")
    ap.add_argument("--overlap", type=float, default=0.7)
    ap.add_argument("--repeats", type=int, default=1)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    module = StereoMatching.load_from_checkpoint(args.ckpt, map_location="cpu").eval()
    if args.tile:
        module.tile_size = list(args.tile)
    module.tile_overlap = args.overlap
    print(f"trained max disparity: {module.train_max_disparity}")
    rows = []
    for tag, s in real_pairs(Path(args.data)):
        gt = s["disparity"][0].numpy()
        valid = np.isfinite(gt)
        H, W = gt.shape
        mp = H * W / 1e6
        for scale in args.scales:
            for tiled in (False, True):
                best = float("inf")
                for _ in range(args.repeats):
                    t0 = time.perf_counter()
                    d = predict_disparity(module, s["image"], s["right"], scale=scale, tiled=tiled)
                    best = min(best, time.perf_counter() - t0)
                err = np.abs(d - gt)[valid]
                rows.append((tag, f"{W}x{H}", scale, "tiled" if tiled else "full", best / mp, float(err.mean()),
                             100.0 * float((err > 2).mean()), float(gt[valid].max())))
                print("| " + " | ".join(f"{v:.3f}" if isinstance(v, float) else str(v) for v in rows[-1]) + " |",
                      flush=True)
    print("\n| pair | size | scale | mode | s / MP | EPE px | bad-2 % | GT max px |\n|---|---|---|---|---|---|---|---|")
    for r in rows:
        print("| " + " | ".join(f"{v:.3f}" if isinstance(v, float) else str(v) for v in r) + " |")
    for scale in args.scales:
        for mode in ("full", "tiled"):
            sel = [r for r in rows if r[2] == scale and r[3] == mode]
            if sel:
                print(f"mean scale {scale} {mode}: {np.mean([r[4] for r in sel]):.3f} s/MP, "
                      f"EPE {np.mean([r[5] for r in sel]):.3f}, bad-2 {np.mean([r[6] for r in sel]):.2f}")


if __name__ == "__main__":
    main()
