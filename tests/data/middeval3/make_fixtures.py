"""Write a tiny MiddEval3 tree: ``trainingH/<Scene>/{im0,im1}.png, disp0GT.pfm, mask0nocc.png`` for 2
scenes and ``testH/<Scene>/im{0,1}.png`` for 1.
Run: python tests/data/middeval3/make_fixtures.py
"""

from pathlib import Path

import numpy as np
from PIL import Image

from vitlab.core.data.io import write_pfm

HERE = Path(__file__).parent


def main() -> None:
    rng = np.random.default_rng(5)
    H, W = 16, 28
    for k, scene in enumerate(("Adirondack", "Vintage")):
        p = HERE / "trainingH" / scene
        p.mkdir(parents=True, exist_ok=True)
        d = np.full((H, W), 12.0 + k, np.float32)
        d[-1] = np.inf
        mask = np.where(np.isfinite(d), 255, 0).astype(np.uint8)
        mask[:, -3:] = 128
        for name in ("im0", "im1"):
            Image.fromarray(rng.integers(0, 256, (H, W, 3), dtype=np.uint8)).save(p / f"{name}.png")
        write_pfm(p / "disp0GT.pfm", d)
        Image.fromarray(mask).save(p / "mask0nocc.png")
    p = HERE / "testH" / "Australia"
    p.mkdir(parents=True, exist_ok=True)
    for name in ("im0", "im1"):
        Image.fromarray(rng.integers(0, 256, (H, W, 3), dtype=np.uint8)).save(p / f"{name}.png")


if __name__ == "__main__":
    main()
