"""Write a tiny Middlebury 2005 half-size tree in the distributed layout: ``<Scene>/disp1.png, disp5.png`` (8-bit,
v = 2 d at half size, 0 = unknown) and ``<Scene>/Illum{1,2}/Exp0/view{1,5}.png`` (two illuminations: 2 pairs),
for Art and Books: 4 pairs.

The left view is a random texture, the right view the same texture shifted by the disparity (d = 4 px at half
size; Books: a 6 px foreground square), so a matcher can find it. ``disp5`` is the right view's GT: where the
right map disagrees (an occluded band) the left-right check marks the left pixels occluded.
Run: python tests/data/middlebury2005/make_fixtures.py
"""

from pathlib import Path

import numpy as np
from PIL import Image

HERE = Path(__file__).parent


def main() -> None:
    rng = np.random.default_rng(5)
    H, W = 24, 40
    for scene in ("Art", "Books"):
        d = np.full((H, W), 4, np.int64)
        if scene == "Books":
            d[8:16, 20:28] = 6
        p = HERE / scene
        p.mkdir(parents=True, exist_ok=True)
        texture = rng.integers(0, 256, (H, W + 8, 3), dtype=np.uint8)
        left = texture[:, :W]
        right = texture[:, 4 : 4 + W].copy()  # background: right(x') = left(x' + 4)
        ys, xs = np.nonzero(d == 6)
        right[ys, xs - 6] = left[ys, xs]  # the foreground square lands 6 px to the left
        for illum in ("Illum1", "Illum2"):
            q = p / illum / "Exp0"
            q.mkdir(parents=True, exist_ok=True)
            Image.fromarray(left).save(q / "view1.png")
            Image.fromarray(right).save(q / "view5.png")
        v1 = (2 * d).astype(np.uint8)
        v1[:2] = 0  # unknown
        v5 = (2 * np.full((H, W), 4, np.int64)).astype(np.uint8)
        v5[:, :3] = 2 * 9  # the right GT disagrees here: left columns 4..6 are occluded
        Image.fromarray(v1).save(p / "disp1.png")
        Image.fromarray(v5).save(p / "disp5.png")


if __name__ == "__main__":
    main()
