"""Write tiny PFM fixtures byte by byte (no vitlab code), so the reader is tested against the real format.

Run by hand: ``python tests/data/pfm/make_fixtures.py``. Output is deterministic.

Files (values are listed top row first, as an image is displayed; PFM stores the bottom row first):

* ``le_4x3.pfm``   -- ``Pf``, 4 wide x 3 high, scale -1.0 (little-endian); pixel (r, c) = 10 r + c + 0.5.
* ``be_rgb_2x2.pfm`` -- ``PF``, 2x2, scale +1.0 (big-endian); pixel (r, c, ch) = 100 r + 10 c + ch.
* ``holes_3x2.pfm`` -- ``Pf`` little-endian with SceneFlow-style header spacing ("Pf \\n3 2 \\n-1.0\\n");
  rows [inf, 1.25, 0.0] and [nan, -2.0, 7.75].
* ``truncated.pfm`` -- header announces 4x3 ``Pf`` (48 data bytes) but only 40 follow.
* ``bad_header.pfm`` -- magic ``P7`` instead of ``PF``/``Pf``.
"""

import struct
from pathlib import Path

HERE = Path(__file__).resolve().parent


def pack_rows_bottom_up(rows, endian):
    """Flatten rows (given top-first) into PFM order: bottom row first, left to right."""
    flat = [
        v
        for row in reversed(rows)
        for pixel in row
        for v in (pixel if isinstance(pixel, tuple) else (pixel,))
    ]
    return struct.pack(f"{endian}{len(flat)}f", *flat)


def main():
    le = [[10 * r + c + 0.5 for c in range(4)] for r in range(3)]
    (HERE / "le_4x3.pfm").write_bytes(b"Pf\n4 3\n-1.0\n" + pack_rows_bottom_up(le, "<"))

    rgb = [[tuple(float(100 * r + 10 * c + ch) for ch in range(3)) for c in range(2)] for r in range(2)]
    (HERE / "be_rgb_2x2.pfm").write_bytes(b"PF\n2 2\n1.0\n" + pack_rows_bottom_up(rgb, ">"))

    inf, nan = float("inf"), float("nan")
    holes = [[inf, 1.25, 0.0], [nan, -2.0, 7.75]]
    (HERE / "holes_3x2.pfm").write_bytes(b"Pf \n3 2 \n-1.0\n" + pack_rows_bottom_up(holes, "<"))

    (HERE / "truncated.pfm").write_bytes(b"Pf\n4 3\n-1\n" + pack_rows_bottom_up(le, "<")[:40])
    (HERE / "bad_header.pfm").write_bytes(b"P7\n4 3\n-1\n" + pack_rows_bottom_up(le, "<"))


if __name__ == "__main__":
    main()
