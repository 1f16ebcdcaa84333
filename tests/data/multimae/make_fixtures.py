"""Write a tiny MultiMAE-layout tree (RGB + 16-bit pseudo-depth) for SG-MIM recipes.

``root/{train,val}/rgb/<class>/<stem>.JPEG`` with ``root/{train,val}/depth/<class>/<stem>.png`` (uint16,
depth = value / 2**16), 2 classes x 2 images per split, 32x32. Run by hand:
``python tests/data/multimae/make_fixtures.py``. Deterministic.
"""

import sys
from pathlib import Path

import numpy as np
from PIL import Image

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
from pngraw import png  # noqa: E402


def main():
    yy, xx = np.mgrid[0:32, 0:32]
    for split_id, split in enumerate(("train", "val")):
        for class_id, name in enumerate(("class_a", "class_b")):
            for k in range(2):
                rgb = np.zeros((32, 32, 3), dtype=np.uint8)
                rgb[..., class_id * 2] = 100 + (yy * 3 + xx * 2 + 11 * k + 5 * split_id) % 150
                rgb[..., 1] = (xx * 7) % 200
                out = HERE / split / "rgb" / name
                out.mkdir(parents=True, exist_ok=True)
                Image.fromarray(rgb).save(out / f"{name}_{k}.JPEG", format="JPEG", quality=90, optimize=False)
                depth = ((xx + yy + 1) * (1000 + 300 * k)).astype(np.uint16)
                out = HERE / split / "depth" / name
                out.mkdir(parents=True, exist_ok=True)
                (out / f"{name}_{k}.png").write_bytes(png(depth.tolist(), 16))


if __name__ == "__main__":
    main()
