"""File-format readers and writers for dense ground truth and images (numpy in, numpy out).

Library-wide conventions enforced here, so every dataset gets them for free:

* continuous ground truth (disparity, depth) comes back as float32 ``(H, W)`` with invalid pixels = ``+inf``;
* label maps come back as the stored integer indices (``255`` = ignore by convention);
* anything missing, truncated or in an unexpected layout raises :class:`DatasetFormatError` (or
  :class:`FileNotFoundError`) with the offending path and what was expected -- never a silently wrong array.
"""

from __future__ import annotations

import math
import os
import re
import struct
from collections.abc import Sequence
from pathlib import Path
from typing import Union

import numpy as np
from PIL import Image

__all__ = [
    "DatasetFormatError",
    "read_depth_png",
    "read_disparity_pfm",
    "read_image",
    "read_image_tensor",
    "require_dir",
    "read_kitti_disparity",
    "read_label_png",
    "read_middlebury_disparity",
    "read_pfm",
    "read_png_scaled",
    "write_kitti_disparity",
    "write_pfm",
    "write_png16",
]

PathLike = Union[str, "os.PathLike[str]"]


from vitlab.core.errors import DatasetFormatError  # noqa: E402  (re-exported: readers raise it)

# --------------------------------------------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------------------------------------------


def _existing_file(path: PathLike, what: str) -> Path:
    """Resolve ``path`` and fail early (with the path in the message) when it is not a readable file."""
    p = Path(path)
    if not p.exists():
        raise FileNotFoundError(f"{p}: file not found (expected {what})")
    if not p.is_file():
        raise DatasetFormatError(f"{p}: is not a regular file (expected {what})")
    return p


def open_image(path: PathLike, what: str) -> Image.Image:
    """Open and fully decode an image with PIL, so truncation errors surface here with the path attached."""
    p = _existing_file(path, what)
    try:
        with Image.open(p) as im:
            im.load()
            return im.copy()  # copy() keeps the palette of "P" images
    except Exception as e:  # PIL raises OSError, SyntaxError, ValueError, zlib errors, ... depending on codec
        raise DatasetFormatError(f"{p}: cannot decode as {what}: {type(e).__name__}: {e}") from e


_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_PNG_COLOR_TYPES = {0: "greyscale", 2: "RGB", 3: "palette", 4: "greyscale+alpha", 6: "RGBA"}


def _png_ihdr(p: Path, what: str) -> tuple[int, int, int, int]:
    """(width, height, bit depth, colour type) straight from the IHDR chunk.

    PIL's mode alone cannot always tell an 8-bit file from a 16-bit one (it may widen to ``I``), so
    readers that depend on the stored bit depth check the header itself.
    """
    with open(p, "rb") as f:
        head = f.read(33)
    if len(head) < 33 or head[:8] != _PNG_SIGNATURE or head[12:16] != b"IHDR":
        raise DatasetFormatError(f"{p}: not a PNG file (bad signature/IHDR); expected {what}")
    width, height, depth, color = struct.unpack(">IIBB", head[16:26])
    return width, height, depth, color


def _stored_bit_depth(im: Image.Image, p: Path, what: str) -> tuple[int, str]:
    """(bits per sample, description) of a single-channel image as stored in the file.

    PNGs are read from the IHDR chunk (PIL may widen 8-bit data); other formats (PGM, ...) from the PIL mode.
    """
    if p.suffix.lower() == ".png" or im.format == "PNG":
        _, _, depth, color = _png_ihdr(p, what)
        found = f"{depth}-bit {_PNG_COLOR_TYPES.get(color, f'colour type {color}')} PNG"
        if color == 3:  # palette: values are the 8-bit palette entries, whatever the 1/2/4/8-bit index width
            return 8, found
        return depth, found
    if im.mode in ("1",):
        return 1, "1-bit image"
    if im.mode in ("L", "P", "LA", "PA"):
        return 8, f"8-bit {im.format or ''} image (mode {im.mode!r})".replace("  ", " ")
    if im.mode.startswith("I;16") or im.mode == "I":
        return 16, f"16-bit {im.format or ''} image (mode {im.mode!r})".replace("  ", " ")
    return 0, f"image of mode {im.mode!r}"


def _check_bit_depth(im: Image.Image, p: Path, bit_depth: int, what: str) -> None:
    """Refuse a file whose stored bit depth is not the one its format prescribes (naming both)."""
    depth, found = _stored_bit_depth(im, p, what)
    if depth != bit_depth:
        raise DatasetFormatError(f"{p}: stored as {found}; expected {what}")


def _check_values(v: np.ndarray, valid: np.ndarray, p: Path, what: str,
                  value_range: tuple[float, float] | None, allowed_values: Sequence[int] | None,
                  min_peak: int | None) -> None:
    """Stored values against the format: inside ``value_range``, among ``allowed_values``, and (for 16-bit
    formats) not all below ``min_peak`` -- 8-bit data written into a 16-bit file."""
    if allowed_values is not None:
        bad = ~np.isin(v, np.asarray(allowed_values))
        if bad.any():
            raise DatasetFormatError(
                f"{p}: found values {np.unique(v[bad])[:10].tolist()}; expected {what} "
                f"(only {sorted(allowed_values)})"
            )
    if value_range is not None and valid.any():
        lo, hi = value_range
        vals = v[valid]
        vmin, vmax = vals.min(), vals.max()
        if vmin < lo or vmax > hi:
            raise DatasetFormatError(
                f"{p}: found stored values {vmin}..{vmax}; expected {what} (valid values within {lo:g}..{hi:g})"
            )
    if min_peak is not None and valid.any():
        vmax = v[valid].max()
        if vmax < min_peak:
            raise DatasetFormatError(
                f"{p}: every stored value is below {min_peak} (max {vmax}): 8-bit data in a 16-bit file "
                f"or a different unit; expected {what}"
            )


def _grey_array(im: Image.Image, p: Path, what: str) -> np.ndarray:
    """Single-channel stored values as an unsigned integer array (palette PNGs are *not* handled here)."""
    if im.mode in ("L", "1"):
        return np.asarray(im.convert("L"), dtype=np.uint8)
    if im.mode in ("I;16", "I;16L", "I;16B", "I;16N"):
        return np.asarray(im).astype(np.uint16, copy=False)
    if im.mode == "I":  # 16-bit PNG/PGM widened to int32 by some Pillow versions
        a = np.asarray(im)
        if a.size and (a.min() < 0 or a.max() > 65535):
            raise DatasetFormatError(
                f"{p}: 32-bit integer image with values outside 0..65535; expected {what}"
            )
        return a.astype(np.uint16)
    raise DatasetFormatError(
        f"{p}: image mode {im.mode!r} with {len(im.getbands())} band(s); expected {what} "
        "(a single-channel 8- or 16-bit image)"
    )


# --------------------------------------------------------------------------------------------------------------
# PFM
# --------------------------------------------------------------------------------------------------------------

# After the magic: width, height and scale separated by whitespace, then exactly one whitespace byte before data.
_PFM_REST = re.compile(rb"\s+(\d+)\s+(\d+)\s+(\S+)\s")
_PFM_WHAT = "a PFM file ('PF'/'Pf' header, width height, scale, then float32 rows stored bottom-to-top)"


def read_pfm(path: PathLike) -> np.ndarray:
    """Read a PFM as stored: float32 ``(H, W)`` for ``Pf`` or ``(H, W, 3)`` for ``PF``.

    The sign of the scale gives the byte order (negative = little-endian) and rows are stored bottom-to-top,
    so both are undone here. inf/nan are kept exactly as stored; use :func:`read_disparity_pfm` to apply the
    invalid-pixel convention. The data size is checked against the header so truncated files fail loudly.
    """
    p = _existing_file(path, _PFM_WHAT)
    with open(p, "rb") as f:
        head = f.read(512)
    if head[:2] not in (b"PF", b"Pf") or len(head) < 3 or not head[2:3].isspace():
        raise DatasetFormatError(
            f"{p}: bad PFM header: expected magic 'PF' (3-channel) or 'Pf' (1-channel), got {head[:8]!r}"
        )
    channels = 3 if head[:2] == b"PF" else 1
    m = _PFM_REST.match(head, 2)
    if m is None:
        raise DatasetFormatError(f"{p}: malformed PFM header {head[:40]!r}; expected {_PFM_WHAT}")
    width, height = int(m.group(1)), int(m.group(2))
    try:
        scale = float(m.group(3))
    except ValueError:
        scale = math.nan
    if width <= 0 or height <= 0:
        raise DatasetFormatError(f"{p}: PFM header has non-positive size {width}x{height}")
    if not math.isfinite(scale) or scale == 0.0:
        raise DatasetFormatError(
            f"{p}: PFM scale {m.group(3)!r} is not a non-zero number (its sign encodes the byte order)"
        )
    offset = m.end()
    expected = width * height * channels * 4
    remaining = p.stat().st_size - offset
    if remaining == expected + 1 and m.group(0).endswith(b"\r") and head[offset : offset + 1] == b"\n":
        offset, remaining = offset + 1, remaining - 1  # header lines ended with CRLF
    if remaining < expected:
        raise DatasetFormatError(
            f"{p}: truncated PFM: header says {width}x{height}x{channels} float32 = {expected} bytes of data, "
            f"but only {remaining} bytes follow the {offset}-byte header"
        )
    if remaining > expected:
        raise DatasetFormatError(
            f"{p}: PFM has {remaining - expected} unexpected trailing bytes after the {expected} bytes of "
            f"{width}x{height}x{channels} float32 data its header announces"
        )
    dtype = np.dtype("<f4" if scale < 0 else ">f4")
    data = np.fromfile(p, dtype=dtype, count=width * height * channels, offset=offset)
    shape = (height, width, 3) if channels == 3 else (height, width)
    return np.ascontiguousarray(data.reshape(shape)[::-1]).astype(np.float32, copy=False)


def write_pfm(path: PathLike, array: np.ndarray, scale: float = 1.0, little_endian: bool = True) -> None:
    """Write float32 ``(H, W)`` (``Pf``) or ``(H, W, 3)`` (``PF``) so that :func:`read_pfm` returns it bit-exactly.

    ``scale`` is the magnitude stored in the header; its sign is set from ``little_endian`` as the format
    requires. inf/nan are written as-is.
    """
    a = np.asarray(array)
    if a.ndim == 3 and a.shape[2] == 1:
        a = a[..., 0]
    if not (a.ndim == 2 or (a.ndim == 3 and a.shape[2] == 3)):
        raise ValueError(f"write_pfm({path}): expected an (H, W) or (H, W, 3) array, got shape {a.shape}")
    if a.shape[0] == 0 or a.shape[1] == 0:
        raise ValueError(f"write_pfm({path}): empty array of shape {a.shape}")
    if not np.issubdtype(a.dtype, np.number) or np.iscomplexobj(a):
        raise ValueError(f"write_pfm({path}): expected a real numeric array, got dtype {a.dtype}")
    if not math.isfinite(scale) or scale <= 0:
        raise ValueError(f"write_pfm({path}): scale must be a positive finite number, got {scale}")
    magic = "PF" if a.ndim == 3 else "Pf"
    signed_scale = -float(scale) if little_endian else float(scale)
    header = f"{magic}\n{a.shape[1]} {a.shape[0]}\n{signed_scale!r}\n".encode("ascii")
    body = np.ascontiguousarray(a.astype(np.float32)[::-1]).astype("<f4" if little_endian else ">f4")
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as f:
        f.write(header)
        f.write(body.tobytes())


def read_disparity_pfm(path: PathLike) -> np.ndarray:
    """Single-channel PFM disparity as float32 ``(H, W)`` with non-finite and ``d <= 0`` set to ``+inf``.

    Stereo datasets (SceneFlow, ETH3D, Middlebury 2014) store positive disparities and mark holes with inf;
    zero/negative values cannot be valid matches, so they join the invalid set.
    """
    d = read_pfm(path)
    if d.ndim != 2:
        raise DatasetFormatError(f"{path}: 3-channel 'PF' file; expected a single-channel 'Pf' disparity map")
    d = d.copy()
    d[~(np.isfinite(d) & (d > 0))] = np.inf
    return d


# --------------------------------------------------------------------------------------------------------------
# PNG ground truth
# --------------------------------------------------------------------------------------------------------------

_KITTI_WHAT = "a KITTI disparity map: 16-bit greyscale PNG, d = v / 256, 0 = no ground truth"


def read_kitti_disparity(path: PathLike) -> np.ndarray:
    """KITTI 2012/2015 disparity as float32 ``(H, W)``: ``d = v / 256``, ``v == 0`` -> ``+inf``.

    Only 16-bit greyscale PNGs are accepted: an 8-bit PNG divided by 256 would look plausible but be wrong.
    """
    p = _existing_file(path, _KITTI_WHAT)
    _, _, depth, color = _png_ihdr(p, _KITTI_WHAT)
    if depth != 16 or color != 0:
        raise DatasetFormatError(
            f"{p}: {depth}-bit {_PNG_COLOR_TYPES.get(color, f'colour type {color}')} PNG; expected {_KITTI_WHAT}"
        )
    v = _grey_array(open_image(p, _KITTI_WHAT), p, _KITTI_WHAT)
    d = v.astype(np.float32) / np.float32(256.0)
    d[v == 0] = np.inf
    return d


def write_kitti_disparity(path: PathLike, disp: np.ndarray) -> None:
    """Write disparity in KITTI's uint16 PNG encoding, ``v = round(d * 256)``.

    Invalid pixels (non-finite or ``d <= 0``) become 0. Valid values are clipped to ``1..65535`` so a tiny
    positive disparity is never turned into "no ground truth" and large ones saturate instead of wrapping.
    """
    d = np.asarray(disp, dtype=np.float64)
    if d.ndim != 2:
        raise ValueError(f"write_kitti_disparity({path}): expected an (H, W) array, got shape {d.shape}")
    valid = np.isfinite(d) & (d > 0)
    v = np.zeros(d.shape, dtype=np.uint16)
    v[valid] = np.clip(np.round(d[valid] * 256.0), 1, 65535).astype(np.uint16)
    write_png16(path, v)


def write_png16(path: PathLike, array: np.ndarray) -> None:
    """Write an ``(H, W)`` uint16 array as a 16-bit greyscale PNG (KITTI disparity, depth in mm, ...)."""
    a = np.asarray(array)
    if a.ndim != 2:
        raise ValueError(f"write_png16({path}): expected an (H, W) array, got shape {a.shape}")
    if a.dtype != np.uint16:
        if not np.issubdtype(a.dtype, np.integer) or (a.size and (a.min() < 0 or a.max() > 65535)):
            raise ValueError(
                f"write_png16({path}): expected uint16 (or integers within 0..65535), got dtype {a.dtype}"
            )
        a = a.astype(np.uint16)
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.ascontiguousarray(a, dtype="<u2")).save(path, format="PNG")  # mode "I;16"


def _palette_to_grey(im: Image.Image, p: Path, what: str) -> np.ndarray:
    """Map palette indices to the grey level of their palette entry; colour palettes are refused.

    A palette PNG storing a scalar quantity (Middlebury v2 ``groundtruth.png``) keeps the quantity in the
    palette, not in the index. A colour palette means the file is a label map, which must not be scaled.
    """
    idx = np.asarray(im, dtype=np.uint8)
    pal = np.asarray(im.getpalette() or [], dtype=np.uint8).reshape(-1, 3)
    used = np.unique(idx)
    if used.size and int(used.max()) >= len(pal):
        raise DatasetFormatError(
            f"{p}: palette PNG uses index {int(used.max())} but its palette has only {len(pal)} entries"
        )
    entries = pal[used]
    if not (np.all(entries[:, 0] == entries[:, 1]) and np.all(entries[:, 1] == entries[:, 2])):
        raise DatasetFormatError(
            f"{p}: palette PNG with a colour (non-grey) palette; expected {what}. "
            "Colour-palette PNGs are label maps: read them with read_label_png"
        )
    return pal[:, 0][idx]


def read_png_scaled(
    path: PathLike,
    scale: float,
    invalid_value: int | None = 0,
    *,
    bit_depth: int | None = None,
    value_range: tuple[float, float] | None = None,
    allowed_values: Sequence[int] | None = None,
    min_peak: int | None = None,
    format_name: str | None = None,
) -> np.ndarray:
    """Scalar ground truth stored as integers: float32 ``(H, W)`` with ``d = v / scale`` and ``invalid_value`` -> ``+inf``.

    Accepts 8/16-bit single-channel PNG/PGM. Palette (``P``) images are converted through their palette to
    the grey value of each entry (never the raw index): Middlebury v2 ``groundtruth.png`` stores indices
    0..7 whose palette greys are the real ``16 * d`` values. Contrast with :func:`read_label_png`, which
    returns the indices themselves. Typical scales: Middlebury 2001/v2 16, 2003 quarter-size 4,
    2006 half-size 2, KITTI 256, NYU depth 1000 (-> metres), MultiMAE pseudo-depth 2**16.
    ``invalid_value=None`` marks nothing invalid.

    Format checks (each failure raises :class:`DatasetFormatError` naming the file, ``format_name`` and what
    was found): ``bit_depth`` is the stored bits per sample the format prescribes (8 or 16; the PNG header
    is read, so an 8-bit file never passes as 16-bit or the reverse); ``value_range`` bounds the stored values
    of valid pixels, ``allowed_values`` lists every legal stored value (masks), and ``min_peak`` refuses a
    file whose valid values all lie below it (8-bit data written into a 16-bit file).
    """
    if not (math.isfinite(scale) and scale > 0):
        raise ValueError(f"read_png_scaled({path}): scale must be positive and finite, got {scale}")
    what = format_name or f"a single-channel 8/16-bit ground-truth image (value = {scale:g} x quantity)"
    p = _existing_file(path, what)
    im = open_image(p, what)
    if bit_depth is not None:
        _check_bit_depth(im, p, bit_depth, what)
    v = _palette_to_grey(im, p, what) if im.mode == "P" else _grey_array(im, p, what)
    valid = np.ones(v.shape, bool) if invalid_value is None else v != invalid_value
    _check_values(v, valid, p, what, value_range, allowed_values, min_peak)
    d = v.astype(np.float32) / np.float32(scale)
    if invalid_value is not None:
        d[~valid] = np.inf
    return d


def read_depth_png(path: PathLike, scale: float = 1000.0) -> np.ndarray:
    """Depth PNG (NYU-style millimetres by default) as float32 metres, 0 -> ``+inf``.

    The format is a 16-bit greyscale PNG holding ``v = depth x scale``: an 8-bit file is refused (its
    values would come out 2-3 orders of magnitude off), and so is a 16-bit file whose valid values all fit
    in 8 bits (below 256 mm everywhere at the default scale: 8-bit data widened to 16 bits).
    """
    what = f"a 16-bit greyscale depth PNG (v = depth x {scale:g}, 0 = invalid; NYU: millimetres)"
    return read_png_scaled(path, scale=scale, invalid_value=0, bit_depth=16, min_peak=256, format_name=what)


def read_middlebury_disparity(path: PathLike, scale: float) -> np.ndarray:
    """Middlebury 2001-2006 / v2 disparity image (``disp*.png``, ``truedisp*.pgm``, ``groundtruth.png``).

    The format is an 8-bit greyscale (or grey-palette) image with ``v = disparity x scale`` and 0 = unknown
    (2006: ``scale`` 1/2/3 for full/half/third size; 2001 and v2: 8, Tsukuba 16; 2003 quarter size: 4). A 16-bit file
    is refused: read as 8-bit disparities it would be off by orders of magnitude.
    """
    what = f"a Middlebury 8-bit greyscale disparity image (v = disparity x {scale:g}, 0 = unknown)"
    return read_png_scaled(path, scale=scale, invalid_value=0, bit_depth=8, format_name=what)


def read_label_png(path: PathLike) -> np.ndarray:
    """Label map as stored: uint8 for 8-bit/palette PNGs, uint16 for 16-bit ones (e.g. instance ids).

    For palette (``P``) PNGs the raw indices ARE the labels (VOC-style: the palette only colours them for
    viewing), so no palette conversion happens here -- the opposite of :func:`read_png_scaled`. Colour-coded
    RGB label maps (e.g. ADE20K full-format ``_seg.png``) need a dataset-specific decoder and are refused.
    """
    what = "a single-channel label PNG (palette, 8-bit or 16-bit greyscale)"
    p = _existing_file(path, what)
    im = open_image(p, what)
    if im.mode == "P":
        return np.array(im, dtype=np.uint8)
    return np.array(_grey_array(im, p, what))


# --------------------------------------------------------------------------------------------------------------
# images
# --------------------------------------------------------------------------------------------------------------

_RGB_CONVERTIBLE = {"RGB", "RGBA", "RGBX", "L", "LA", "P", "PA", "1", "CMYK", "YCbCr", "La"}


def require_dir(path: PathLike, layout: str, what: str) -> Path:
    """``path`` if it is a directory; otherwise an error naming it, what it should be and the expected layout."""
    p = Path(path)
    if not p.exists():
        raise FileNotFoundError(f"{p}: {what} not found; expected layout:\n{layout}")
    if not p.is_dir():
        raise DatasetFormatError(f"{p}: {what} is not a directory; expected layout:\n{layout}")
    return p


def read_image_tensor(path: PathLike, uint8: bool = True):
    """An image file as a ``(3, H, W)`` torch tensor: uint8 (default) or float32 in [0, 1].

    The one image reader of every vitlab dataset (see :func:`read_image` for the accepted files).
    """
    import torch

    t = torch.from_numpy(read_image(path)).permute(2, 0, 1).contiguous()
    return t if uint8 else t.float().div_(255.0)


def read_image(path: PathLike) -> np.ndarray:
    """8-bit RGB ``(H, W, 3)`` from PNG/JPEG/PPM/PGM/...; grey is replicated, alpha dropped.

    16-bit/float images are refused rather than silently truncated: they are ground truth, not photos.
    """
    what = "an 8-bit RGB or greyscale image (PNG/JPEG/PPM/PGM)"
    p = _existing_file(path, what)
    im = open_image(p, what)
    if im.mode not in _RGB_CONVERTIBLE:
        raise DatasetFormatError(f"{p}: image mode {im.mode!r} (not 8-bit); expected {what}")
    return np.array(im.convert("RGB"), dtype=np.uint8)
