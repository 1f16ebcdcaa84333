"""Write a tiny VOC-style label PNG: colour palette, the raw indices are the class ids (255 = ignore).

Run by hand: ``python tests/data/labels/make_fixtures.py``. Output is deterministic (hand-rolled encoder).

* ``voc_palette.png`` -- 4 wide x 3 high palette PNG, indices rows [0, 1, 2, 255], [1, 1, 0, 2], [255, 2, 2, 0];
  palette = VOC colours for 0, 1, 2, black padding up to 255, and (224, 224, 192) at 255.
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from pngraw import png  # noqa: E402

HERE = Path(__file__).resolve().parent

INDICES = [[0, 1, 2, 255], [1, 1, 0, 2], [255, 2, 2, 0]]
PALETTE = [(0, 0, 0), (128, 0, 0), (0, 128, 0)] + [(0, 0, 0)] * 252 + [(224, 224, 192)]


def png_palette(rows, palette):
    return png(rows, 8, color_type=3, palette=palette)


def main():
    (HERE / "voc_palette.png").write_bytes(png_palette(INDICES, PALETTE))


if __name__ == "__main__":
    main()
