"""Writes a tiny NYUD-v2 multi-task tree (the NYUD_MT layout) under ./NYUD_MT.

Run from anywhere: ``python tests/data/nyud_mt/make_fixtures.py``. Four 32x40 samples (2 train, 2 val):
JPEG images, uint8 segmentation PNGs (0 = void, 1..40 = classes), depth/normals/edge as .npy
(depth in metres with 0 = missing, normals HxWx3 in [-1, 1]).
"""

import shutil
from pathlib import Path

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parent / "NYUD_MT"
H, W = 32, 40
TRAIN = ["0001", "0002"]
VAL = ["0003", "0004"]


def main() -> None:
    if ROOT.exists():
        shutil.rmtree(ROOT)
    rng = np.random.default_rng(0)
    for sub in ("images", "segmentation", "depth", "normals", "edge", "gt_sets"):
        (ROOT / sub).mkdir(parents=True)
    (ROOT / "gt_sets/train.txt").write_text("\n".join(TRAIN) + "\n")
    (ROOT / "gt_sets/val.txt").write_text("\n".join(VAL) + "\n")
    for _i, name in enumerate(TRAIN + VAL):
        Image.fromarray(rng.integers(0, 256, (H, W, 3), dtype=np.uint8)).save(ROOT / "images" / f"{name}.jpg")
        seg = rng.integers(1, 41, (H, W)).astype(np.uint8)
        seg[:2] = 0
        Image.fromarray(seg).save(ROOT / "segmentation" / f"{name}.png")
        depth = rng.uniform(0.5, 9.5, (H, W)).astype(np.float32)
        depth[-3:, :5] = 0.0
        np.save(ROOT / "depth" / f"{name}.npy", depth)
        n = rng.normal(size=(H, W, 3)).astype(np.float32)
        np.save(ROOT / "normals" / f"{name}.npy", n / np.linalg.norm(n, axis=-1, keepdims=True))
        edge = np.zeros((H, W), np.float32)
        edge[:, W // 2] = 1.0
        np.save(ROOT / "edge" / f"{name}.npy", edge)
    print(f"wrote {ROOT}")


if __name__ == "__main__":
    main()
