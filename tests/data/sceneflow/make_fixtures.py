"""Write a tiny SceneFlow tree in the official layout (PNG frames, bottom-up little-endian PFM disparity).

FlyingThings3D TRAIN (2 pairs) and TEST (1 pair), Driving (1), Monkaa (1), clean and final passes.
Disparity of pair k is the constant-gradient map ``d = 2 + k + x / 8`` (all valid).
Run: python tests/data/sceneflow/make_fixtures.py
"""

from pathlib import Path

import numpy as np
from PIL import Image

from vitlab.core.data.io import write_pfm

HERE = Path(__file__).parent
H, W = 24, 40
PAIRS = [
    "flyingthings3d/{f}/TRAIN/A/0000/{v}/0006",
    "flyingthings3d/{f}/TRAIN/B/0001/{v}/0007",
    "flyingthings3d/{f}/TEST/A/0000/{v}/0006",
    "driving/{f}/15mm_focallength/scene_forwards/fast/{v}/0001",
    "monkaa/{f}/a_rain_of_stones_x2/{v}/0000",
]


def main() -> None:
    rng = np.random.default_rng(0)
    for k, pat in enumerate(PAIRS):
        disp = (2.0 + k + np.arange(W, dtype=np.float32)[None] / 8.0).repeat(H, 0)
        for ps in ("clean", "final"):
            for v in ("left", "right"):
                p = HERE / (pat.format(f=f"frames_{ps}pass", v=v) + ".png")
                p.parent.mkdir(parents=True, exist_ok=True)
                Image.fromarray(rng.integers(0, 256, (H, W, 3), dtype=np.uint8)).save(p)
        write_pfm(HERE / (pat.format(f="disparity", v="left") + ".pfm"), disp)


if __name__ == "__main__":
    main()
