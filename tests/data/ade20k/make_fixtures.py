"""Write a tiny ADEChallengeData2016 tree: 4 training and 2 validation images of different sizes.

``images/<split>/ADE_<split>_0000000k.jpg`` (JPEG) + ``annotations/<split>/....png``: 8-bit greyscale
(hand-rolled PNG encoder), 0 = "other", 1..150 = classes. Every annotation holds 0 (top-left 4x4 block),
150 (bottom row) and vertical stripes of ``1 + (x // 4 + 7 k) % 149``.
Run: python tests/data/ade20k/make_fixtures.py
"""

import sys
from pathlib import Path

import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from pngraw import png  # noqa: E402

HERE = Path(__file__).resolve().parent / "ADEChallengeData2016"
SIZES = [(40, 56), (48, 40), (36, 64), (44, 44), (40, 60), (52, 36)]


def main() -> None:
    rng = np.random.default_rng(5)
    for k, (h, w) in enumerate(SIZES):
        split, prefix = ("training", "train") if k < 4 else ("validation", "val")
        name = f"ADE_{prefix}_{k + 1:08d}"
        lab = 1 + (np.arange(w)[None].repeat(h, 0) // 4 + 7 * k) % 149
        lab[:4, :4] = 0
        lab[-1] = 150
        img = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
        for folder in ("images", "annotations"):
            (HERE / folder / split).mkdir(parents=True, exist_ok=True)
        Image.fromarray(img).save(HERE / "images" / split / f"{name}.jpg", quality=90)
        (HERE / "annotations" / split / f"{name}.png").write_bytes(png(lab.tolist(), 8))


if __name__ == "__main__":
    main()
