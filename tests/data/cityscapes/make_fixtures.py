"""Write a tiny Cityscapes tree (official names/layout): 2 train cities x 1 frame, 1 val frame, 32x64.

``leftImg8bit/<split>/<city>/<city>_000000_0000k9_leftImg8bit.png`` (RGB PNG) and
``gtFine/<split>/<city>/..._gtFine_labelIds.png`` (8-bit Cityscapes ids 0..33, stripes of 4 columns) plus
``..._gtFine_labelTrainIds.png``, its trainId conversion (7->0, 8->1, ..., 33->18, others 255).
Run: python tests/data/cityscapes/make_fixtures.py
"""

import sys
from pathlib import Path

import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from pngraw import png  # noqa: E402

HERE = Path(__file__).resolve().parent
H, W = 32, 64
TRAIN_IDS = {7: 0, 8: 1, 11: 2, 12: 3, 13: 4, 17: 5, 19: 6, 20: 7, 21: 8, 22: 9, 23: 10, 24: 11, 25: 12,
             26: 13, 27: 14, 28: 15, 31: 16, 32: 17, 33: 18}
FRAMES = [("train", "aachen"), ("train", "bochum"), ("val", "frankfurt")]


def main() -> None:
    rng = np.random.default_rng(3)
    for k, (split, city) in enumerate(FRAMES):
        stem = f"{city}_000000_{k:05d}9"
        ids = (np.arange(W)[None].repeat(H, 0) // 4 + 5 * k) % 34
        train = np.vectorize(lambda v: TRAIN_IDS.get(int(v), 255))(ids)
        img_dir, gt_dir = HERE / "leftImg8bit" / split / city, HERE / "gtFine" / split / city
        img_dir.mkdir(parents=True, exist_ok=True)
        gt_dir.mkdir(parents=True, exist_ok=True)
        Image.fromarray(rng.integers(0, 256, (H, W, 3), dtype=np.uint8)).save(img_dir / f"{stem}_leftImg8bit.png")
        (gt_dir / f"{stem}_gtFine_labelIds.png").write_bytes(png(ids.tolist(), 8))
        (gt_dir / f"{stem}_gtFine_labelTrainIds.png").write_bytes(png(train.tolist(), 8))


if __name__ == "__main__":
    main()
