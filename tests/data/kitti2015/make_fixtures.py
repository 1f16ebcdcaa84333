"""Write a tiny KITTI 2015 ``data_scene_flow`` tree: 6 training pairs, 1 testing pair.

``disp_occ_0``: uint16 PNG v = 256 d (0 = no GT, top 4 rows); ``disp_noc_0``: same minus a 4-column
occluded band at the left. d = 10 + k + x / 16. Frames differ in size (KITTI sizes vary per frame).
Run: python tests/data/kitti2015/make_fixtures.py
"""

from pathlib import Path

import numpy as np
from PIL import Image

from vitlab.core.data.io import write_kitti_disparity

HERE = Path(__file__).parent / "data_scene_flow"


def main() -> None:
    rng = np.random.default_rng(1)
    for k in range(6):
        H, W = 20, 48 + 2 * (k % 2)
        d = (10.0 + k + np.arange(W, dtype=np.float32)[None] / 16.0).repeat(H, 0)
        d[:4] = np.inf
        noc = d.copy()
        noc[:, :4] = np.inf
        for folder in ("image_2", "image_3"):
            p = HERE / "training" / folder / f"{k:06d}_10.png"
            p.parent.mkdir(parents=True, exist_ok=True)
            Image.fromarray(rng.integers(0, 256, (H, W, 3), dtype=np.uint8)).save(p)
        write_kitti_disparity(HERE / "training" / "disp_occ_0" / f"{k:06d}_10.png", d)
        write_kitti_disparity(HERE / "training" / "disp_noc_0" / f"{k:06d}_10.png", noc)
    for folder in ("image_2", "image_3"):
        p = HERE / "testing" / folder / "000000_10.png"
        p.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(rng.integers(0, 256, (20, 48, 3), dtype=np.uint8)).save(p)


if __name__ == "__main__":
    main()
