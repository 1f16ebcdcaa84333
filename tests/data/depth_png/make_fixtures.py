"""Write a tiny NYU-style depth PNG (16-bit greyscale, millimetres, 0 = invalid) with a hand-rolled encoder.

Run by hand: ``python tests/data/depth_png/make_fixtures.py``. Output is deterministic.

* ``depth_mm.png`` -- 4 wide x 3 high, rows [0, 1000, 1490, 10000], [2500, 0, 65535, 1], [750, 3333, 0, 4096]
  -> metres = v / 1000 with 0 -> inf.
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from pngraw import png  # noqa: E402

HERE = Path(__file__).resolve().parent

DEPTH_MM = [[0, 1000, 1490, 10000], [2500, 0, 65535, 1], [750, 3333, 0, 4096]]


def png16(rows):
    return png(rows, 16)


def main():
    (HERE / "depth_mm.png").write_bytes(png16(DEPTH_MM))


if __name__ == "__main__":
    main()
