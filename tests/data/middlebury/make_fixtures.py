"""Write tiny Middlebury-format fixtures (PGM/PPM and PNG, hand-encoded, no PIL).

Run by hand: ``python tests/data/middlebury/make_fixtures.py``. Output is deterministic. All maps are 4 wide
x 3 high.

* ``tsukuba/truedisp.row3.col3.pgm`` -- 2001 style binary PGM (P5, maxval 255), v = 16 d, 0 = unknown:
  rows [0, 80, 96, 224], [112, 0, 128, 160], [176, 80, 0, 16] -> d = v / 16.
* ``tsukuba/scene1.row3.col3.ppm`` -- binary PPM (P6); pixel (r, c) = (10 r + c, 100 + c, 200 + r).
* ``v2/groundtruth.png`` -- v2-eval style palette PNG: indices 0..4 whose palette entries are the greys
  0, 224, 176, 160, 128 (like the real file). Indices rows [0, 1, 2, 3], [4, 0, 1, 2], [3, 4, 0, 1].
* ``cones/disp2.png`` -- 2003 quarter-size style 8-bit greyscale PNG, v = 4 d:
  rows [0, 22, 220, 4], [100, 0, 3, 255], [40, 41, 42, 0].
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from pngraw import png  # noqa: E402

HERE = Path(__file__).resolve().parent

PGM = [[0, 80, 96, 224], [112, 0, 128, 160], [176, 80, 0, 16]]
PALETTE = [(0, 0, 0), (224, 224, 224), (176, 176, 176), (160, 160, 160), (128, 128, 128)]
GT_INDICES = [[0, 1, 2, 3], [4, 0, 1, 2], [3, 4, 0, 1]]
CONES = [[0, 22, 220, 4], [100, 0, 3, 255], [40, 41, 42, 0]]


def main():
    (HERE / "tsukuba").mkdir(exist_ok=True)
    (HERE / "v2").mkdir(exist_ok=True)
    (HERE / "cones").mkdir(exist_ok=True)
    (HERE / "tsukuba" / "truedisp.row3.col3.pgm").write_bytes(
        b"P5\n4 3\n255\n" + bytes(v for row in PGM for v in row)
    )
    ppm = bytes(v for r in range(3) for c in range(4) for v in (10 * r + c, 100 + c, 200 + r))
    (HERE / "tsukuba" / "scene1.row3.col3.ppm").write_bytes(b"P6\n4 3\n255\n" + ppm)
    (HERE / "v2" / "groundtruth.png").write_bytes(png(GT_INDICES, 8, color_type=3, palette=PALETTE))
    (HERE / "cones" / "disp2.png").write_bytes(png(CONES, 8))


if __name__ == "__main__":
    main()
