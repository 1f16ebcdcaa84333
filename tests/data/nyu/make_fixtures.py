"""Write a tiny NYU Depth v2 tree in mmsegmentation's layout: 3 train and 2 test frames of 24x32.

``images/{train,test}/<scene>_<k>.jpg`` + ``annotations/{train,test}/<scene>_<k>.png``: uint16 depth in
millimetres (hand-rolled PNG encoder); 0 = invalid (left 3 columns), 12000 (beyond a 10 m max_depth) in
the top-right 2x2 block, elsewhere ``1000 + 250 * (y // 4) + 10 * k`` mm.
Run: python tests/data/nyu/make_fixtures.py
"""

import sys
from pathlib import Path

import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from pngraw import png  # noqa: E402

HERE = Path(__file__).resolve().parent
H, W = 24, 32


def depth_mm(k: int) -> np.ndarray:
    d = 1000 + 250 * (np.arange(H)[:, None].repeat(W, 1) // 4) + 10 * k
    d[:, :3] = 0
    d[:2, -2:] = 12000
    return d


def main() -> None:
    rng = np.random.default_rng(7)
    for k in range(5):
        split = "train" if k < 3 else "test"
        name = f"bedroom_{k:04d}"
        for folder in ("images", "annotations"):
            (HERE / folder / split).mkdir(parents=True, exist_ok=True)
        Image.fromarray(rng.integers(0, 256, (H, W, 3), dtype=np.uint8)).save(
            HERE / "images" / split / f"{name}.jpg", quality=90)
        (HERE / "annotations" / split / f"{name}.png").write_bytes(png(depth_mm(k).tolist(), 16))


if __name__ == "__main__":
    main()
