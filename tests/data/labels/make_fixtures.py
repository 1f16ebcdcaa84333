"""Write a tiny VOC-style label PNG: colour palette, the raw indices are the class ids (255 = ignore).

Run by hand: ``python tests/data/labels/make_fixtures.py``. Output is deterministic (hand-rolled encoder).

* ``voc_palette.png`` -- 4 wide x 3 high palette PNG, indices rows [0, 1, 2, 255], [1, 1, 0, 2], [255, 2, 2, 0];
  palette = VOC colours for 0, 1, 2, black padding up to 255, and (224, 224, 192) at 255.
"""

import struct
import zlib
from pathlib import Path

HERE = Path(__file__).resolve().parent

INDICES = [[0, 1, 2, 255], [1, 1, 0, 2], [255, 2, 2, 0]]
PALETTE = [(0, 0, 0), (128, 0, 0), (0, 128, 0)] + [(0, 0, 0)] * 252 + [(224, 224, 192)]


def png_palette(rows, palette):
    """Encode an 8-bit palette PNG (colour type 3) with a PLTE chunk."""
    height, width = len(rows), len(rows[0])
    raw = b"".join(b"\x00" + bytes(row) for row in rows)

    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 3, 0, 0, 0)
    plte = bytes(v for rgb in palette for v in rgb)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", ihdr)
        + chunk(b"PLTE", plte)
        + chunk(b"IDAT", zlib.compress(raw, 9))
        + chunk(b"IEND", b"")
    )


def main():
    (HERE / "voc_palette.png").write_bytes(png_palette(INDICES, PALETTE))


if __name__ == "__main__":
    main()
