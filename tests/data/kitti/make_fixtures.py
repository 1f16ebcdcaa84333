"""Write tiny KITTI-style disparity PNGs with a hand-rolled PNG encoder (zlib + struct, no PIL).

Run by hand: ``python tests/data/kitti/make_fixtures.py``. Output is deterministic.

* ``training/disp_occ_0/000000_10.png`` -- 16-bit greyscale, 4 wide x 3 high, v = 256 d, 0 = no GT:
  rows [0, 256, 640, 2624], [65535, 0, 1, 16512], [128, 512, 0, 25600]
  i.e. d = [inf, 1, 2.5, 10.25], [255.99609375, inf, 0.00390625, 64.5], [0.5, 2, inf, 100].
* ``disp_8bit.png`` -- the same layout as an 8-bit greyscale PNG (must be rejected by the KITTI reader).
* ``truncated.png`` -- the 16-bit file cut after 60 bytes (valid signature and IHDR, broken data).
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from pngraw import png  # noqa: E402

HERE = Path(__file__).resolve().parent

V16 = [[0, 256, 640, 2624], [65535, 0, 1, 16512], [128, 512, 0, 25600]]
V8 = [[0, 16, 40, 164], [255, 0, 1, 129], [8, 32, 0, 200]]


def main():
    good = png(V16, 16)
    (HERE / "training" / "disp_occ_0").mkdir(parents=True, exist_ok=True)
    (HERE / "training" / "disp_occ_0" / "000000_10.png").write_bytes(good)
    (HERE / "disp_8bit.png").write_bytes(png(V8, 8))
    (HERE / "truncated.png").write_bytes(good[:60])


if __name__ == "__main__":
    main()
