"""Write tiny KITTI-style disparity PNGs with a hand-rolled PNG encoder (zlib + struct, no PIL).

Run by hand: ``python tests/data/kitti/make_fixtures.py``. Output is deterministic.

* ``training/disp_occ_0/000000_10.png`` -- 16-bit greyscale, 4 wide x 3 high, v = 256 d, 0 = no GT:
  rows [0, 256, 640, 2624], [65535, 0, 1, 16512], [128, 512, 0, 25600]
  i.e. d = [inf, 1, 2.5, 10.25], [255.99609375, inf, 0.00390625, 64.5], [0.5, 2, inf, 100].
* ``disp_8bit.png`` -- the same layout as an 8-bit greyscale PNG (must be rejected by the KITTI reader).
* ``truncated.png`` -- the 16-bit file cut after 60 bytes (valid signature and IHDR, broken data).
"""

import struct
import zlib
from pathlib import Path

HERE = Path(__file__).resolve().parent

V16 = [[0, 256, 640, 2624], [65535, 0, 1, 16512], [128, 512, 0, 25600]]
V8 = [[0, 16, 40, 164], [255, 0, 1, 129], [8, 32, 0, 200]]


def png(rows, bit_depth, color_type=0, palette=None):
    """Encode a greyscale/palette PNG: filter type 0 per row, big-endian samples as the spec requires."""
    height, width = len(rows), len(rows[0])
    fmt = f">{width}H" if bit_depth == 16 else f"{width}B"
    raw = b"".join(b"\x00" + struct.pack(fmt, *row) for row in rows)

    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    out = b"\x89PNG\r\n\x1a\n" + chunk(
        b"IHDR", struct.pack(">IIBBBBB", width, height, bit_depth, color_type, 0, 0, 0)
    )
    if palette is not None:
        out += chunk(b"PLTE", bytes(v for rgb in palette for v in rgb))
    return out + chunk(b"IDAT", zlib.compress(raw, 9)) + chunk(b"IEND", b"")


def main():
    good = png(V16, 16)
    (HERE / "training" / "disp_occ_0").mkdir(parents=True, exist_ok=True)
    (HERE / "training" / "disp_occ_0" / "000000_10.png").write_bytes(good)
    (HERE / "disp_8bit.png").write_bytes(png(V8, 8))
    (HERE / "truncated.png").write_bytes(good[:60])


if __name__ == "__main__":
    main()
