"""Write a tiny ETH3D low-res two-view tree in the official layout: ``two_view_training/<scene>/im{0,1}.png``,
``two_view_training_gt/<scene>/disp0GT.pfm`` (inf holes) and ``mask0nocc.png`` (255 non-occluded, 128
occluded, 0 no GT). Scenes: delivery_area_3s (a CroCo subval scene) and terrace_1s.
Run: python tests/data/eth3d/make_fixtures.py
"""

from pathlib import Path

import numpy as np
from PIL import Image

from vitlab.core.data.io import write_pfm

HERE = Path(__file__).parent


def main() -> None:
    rng = np.random.default_rng(3)
    H, W = 18, 30
    for k, scene in enumerate(("delivery_area_3s", "terrace_1s")):
        d = np.full((H, W), 4.0 + k, np.float32)
        d[:, -5:] = np.inf
        mask = np.where(np.isfinite(d), 255, 0).astype(np.uint8)
        mask[:, :2] = 128
        img = HERE / "two_view_training" / scene
        gt = HERE / "two_view_training_gt" / scene
        img.mkdir(parents=True, exist_ok=True)
        gt.mkdir(parents=True, exist_ok=True)
        for name in ("im0.png", "im1.png"):
            Image.fromarray(rng.integers(0, 256, (H, W), dtype=np.uint8)).convert("RGB").save(img / name)
        write_pfm(gt / "disp0GT.pfm", d)
        Image.fromarray(mask).save(gt / "mask0nocc.png")


if __name__ == "__main__":
    main()
