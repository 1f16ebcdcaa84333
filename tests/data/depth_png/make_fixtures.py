"""Write a tiny NYU-style depth PNG (16-bit greyscale, millimetres, 0 = invalid) with a hand-rolled encoder.

Run by hand: ``python tests/data/depth_png/make_fixtures.py``. Output is deterministic.

* ``depth_mm.png`` -- 4 wide x 3 high, rows [0, 1000, 1490, 10000], [2500, 0, 65535, 1], [750, 3333, 0, 4096]
  -> metres = v / 1000 with 0 -> inf.
"""

import struct
import zlib
from pathlib import Path

HERE = Path(__file__).resolve().parent

DEPTH_MM = [[0, 1000, 1490, 10000], [2500, 0, 65535, 1], [750, 3333, 0, 4096]]


def png16(rows):
    """Encode a 16-bit greyscale PNG: filter type 0 per row, big-endian samples."""
    height, width = len(rows), len(rows[0])
    raw = b"".join(b"\x00" + struct.pack(f">{width}H", *row) for row in rows)

    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", width, height, 16, 0, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", ihdr)
        + chunk(b"IDAT", zlib.compress(raw, 9))
        + chunk(b"IEND", b"")
    )


def main():
    (HERE / "depth_mm.png").write_bytes(png16(DEPTH_MM))


if __name__ == "__main__":
    main()
