"""Write a tiny ImageNet-layout tree: ``root/{train,val}/<class>/<image>``, 2 classes x 3 images per split.

Run by hand: ``python tests/data/imagefolder/make_fixtures.py``. Deterministic: pixel values are a fixed
function of (split, class, image), and JPEG/PNG encoding uses fixed settings.

Train images are 16x16 ``.JPEG`` (ImageNet's own extension), val images are 16x16 ``.png``. Class
``class_a`` images are reddish, ``class_b`` bluish.
"""

from pathlib import Path

import numpy as np
from PIL import Image

HERE = Path(__file__).resolve().parent
CLASSES = ("class_a", "class_b")


def image(split_id, class_id, k):
    """16x16 RGB gradient whose dominant channel depends on the class."""
    yy, xx = np.mgrid[0:16, 0:16]
    base = (yy * 8 + xx * 4 + 20 * k + 7 * split_id) % 128
    rgb = np.zeros((16, 16, 3), dtype=np.uint8)
    rgb[..., 0 if class_id == 0 else 2] = 127 + base
    rgb[..., 1] = base
    return Image.fromarray(rgb, mode="RGB")


def main():
    for split_id, (split, ext) in enumerate((("train", "JPEG"), ("val", "png"))):
        for class_id, name in enumerate(CLASSES):
            folder = HERE / split / name
            folder.mkdir(parents=True, exist_ok=True)
            for k in range(3):
                img = image(split_id, class_id, k)
                path = folder / f"{name}_{k}.{ext}"
                if ext == "JPEG":
                    img.save(path, format="JPEG", quality=90, optimize=False)
                else:
                    img.save(path, format="PNG", optimize=False)


if __name__ == "__main__":
    main()
