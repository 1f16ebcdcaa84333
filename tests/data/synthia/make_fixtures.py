"""Write a tiny SYNTHIA-RAND-CITYSCAPES tree in the real format: ``RGB/<id>.png`` (RGB) and
``GT/LABELS/<id>.png``: 16-bit 3-channel PNGs whose last channel in OpenCV (BGR) order holds the SYNTHIA
class id (first channel: an instance-like id that readers must ignore). 3 frames of 95x160.
Run: python tests/data/synthia/make_fixtures.py (``sample_class_stats.json`` beside it is the RCS cache
that ``vitlab.uda.data.class_stats`` writes; delete it after regenerating the images).
"""

from pathlib import Path

import cv2
import numpy as np

HERE = Path(__file__).resolve().parent
H, W = 95, 160


def main() -> None:
    rng = np.random.default_rng(7)
    (HERE / "RGB").mkdir(exist_ok=True)
    (HERE / "GT" / "LABELS").mkdir(parents=True, exist_ok=True)
    for k in range(3):
        cls = np.full((H, W), 3, np.uint16)  # road
        cls[: H // 3] = 1  # sky
        cls[H // 3 : H // 2] = 2  # building
        cls[H // 2 : H // 2 + 15, 20 + 30 * k : 60 + 30 * k] = 8  # car
        cls[H // 2 :, :5] = 4  # sidewalk
        cls[0:4, 0:4] = 0  # void -> 255
        cls[H // 2 : H // 2 + 15, 140:150] = 10  # pedestrian
        label = np.stack([rng.integers(0, 500, (H, W)).astype(np.uint16), np.zeros((H, W), np.uint16), cls], -1)
        assert cv2.imwrite(str(HERE / "GT" / "LABELS" / f"{k:07d}.png"), label)
        img = (cls.astype(np.int64)[..., None] * np.array([23, 61, 97]) % 200 + rng.integers(0, 55, (H, W, 3)))
        assert cv2.imwrite(str(HERE / "RGB" / f"{k:07d}.png"), img.astype(np.uint8))


if __name__ == "__main__":
    main()
