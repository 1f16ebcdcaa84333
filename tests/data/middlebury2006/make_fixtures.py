"""Write a tiny Middlebury 2006 half-size tree: ``<Scene>/view1.png, view5.png, disp1.png`` (8-bit, v = 2 d at
half size, 0 = unknown) for Aloe, and ``Baby1/Illum1/Exp0/view{1,5}.png`` + ``Baby1/disp1.png``.
Run: python tests/data/middlebury2006/make_fixtures.py
"""

from pathlib import Path

import numpy as np
from PIL import Image

HERE = Path(__file__).parent


def main() -> None:
    rng = np.random.default_rng(6)
    H, W = 14, 26
    v = np.full((H, W), 60, np.uint8)  # d = 30 px at half size
    v[:, :3] = 0
    for scene, sub in (("Aloe", ""), ("Baby1", "Illum1/Exp0")):
        p = HERE / scene
        (p / sub).mkdir(parents=True, exist_ok=True)
        for name in ("view1.png", "view5.png"):
            Image.fromarray(rng.integers(0, 256, (H, W, 3), dtype=np.uint8)).save(p / sub / name)
        Image.fromarray(v).save(p / "disp1.png")


if __name__ == "__main__":
    main()
