"""Write a tiny Middlebury 2014 tree: ``<Scene>-perfect/{im0,im1,im1E,im1L}.png`` + ``disp0.pfm`` (inf holes) +
the right view's ``disp1.pfm`` (it disagrees in its first 2 columns, so left columns 30 + k, 31 + k fail the
left-right check, as do the columns whose match leaves the frame).
Scenes Adirondack-perfect and Umbrella-imperfect (a CroCo subval scene): 6 pairs.
Run: python tests/data/middlebury2014/make_fixtures.py
"""

from pathlib import Path

import numpy as np
from PIL import Image

from vitlab.core.data.io import write_pfm

HERE = Path(__file__).parent


def main() -> None:
    rng = np.random.default_rng(4)
    H, W = 20, 36
    for k, scene in enumerate(("Adirondack-perfect", "Umbrella-imperfect")):
        d = np.full((H, W), 30.0 + k, np.float32)
        d[0] = np.inf
        p = HERE / scene
        p.mkdir(parents=True, exist_ok=True)
        for name in ("im0", "im1", "im1E", "im1L"):
            Image.fromarray(rng.integers(0, 256, (H, W, 3), dtype=np.uint8)).save(p / f"{name}.png")
        write_pfm(p / "disp0.pfm", d)
        d1 = np.full((H, W), 30.0 + k, np.float32)
        d1[:, :2] = 25.0
        write_pfm(p / "disp1.pfm", d1)


if __name__ == "__main__":
    main()
