"""Write a tiny GTA5 tree in the real format: ``images/<id>.png`` (RGB) + ``labels/<id>.png`` (palette PNG of
Cityscapes label ids, as GTA5 ships them). 4 frames of 96x160: sky on top, road at the bottom, buildings,
cars and a rare class (bus, id 28) in one frame only, so rare class sampling has something to find.
Run: python tests/data/gta5/make_fixtures.py (``sample_class_stats.json`` beside it is the RCS cache
that ``vitlab.uda.data.class_stats`` writes; delete it after regenerating the images).
"""

import sys
from pathlib import Path

import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from pngraw import png  # noqa: E402

HERE = Path(__file__).resolve().parent
H, W = 96, 160
PALETTE = [(i * 7 % 256, i * 37 % 256, i * 91 % 256) for i in range(256)]


def main() -> None:
    rng = np.random.default_rng(5)
    (HERE / "images").mkdir(exist_ok=True)
    (HERE / "labels").mkdir(exist_ok=True)
    for k in range(4):
        ids = np.full((H, W), 7, np.int64)  # road
        ids[: H // 3] = 23  # sky
        ids[H // 3 : H // 2] = 11  # building
        ids[H // 2 : H // 2 + 16, 20 + 20 * k : 60 + 20 * k] = 26  # car
        ids[H // 2 :, :4] = 8  # sidewalk
        ids[-3:, -6:] = 1  # ego vehicle: not a train class (255)
        if k == 2:
            ids[H // 2 : H // 2 + 30, 100:150] = 28  # bus (rare)
        colour = np.asarray(PALETTE, np.uint8)[ids] // 2 + rng.integers(0, 100, (H, W, 3), dtype=np.uint8)
        Image.fromarray(colour).save(HERE / "images" / f"{k + 1:05d}.png")
        (HERE / "labels" / f"{k + 1:05d}.png").write_bytes(png(ids.tolist(), 8, color_type=3, palette=PALETTE))


if __name__ == "__main__":
    main()
