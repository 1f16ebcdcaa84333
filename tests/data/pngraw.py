"""Byte-level PNG encoder for the fixture scripts: real PNG files without PIL or vitlab in the loop."""

import struct
import zlib


def png(rows, bit_depth, color_type=0, palette=None):
    """Encode a greyscale (colour type 0) or palette (3) PNG: filter type 0 per row, big-endian samples."""
    height, width = len(rows), len(rows[0])
    fmt = f">{width}H" if bit_depth == 16 else f"{width}B"
    raw = b"".join(b"\x00" + struct.pack(fmt, *row) for row in rows)

    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    out = b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, bit_depth, color_type, 0, 0, 0))
    if palette is not None:
        out += chunk(b"PLTE", bytes(v for rgb in palette for v in rgb))
    return out + chunk(b"IDAT", zlib.compress(raw, 9)) + chunk(b"IEND", b"")
