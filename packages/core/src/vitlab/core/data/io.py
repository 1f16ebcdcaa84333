"""File-format readers and writers for dense ground truth and images (numpy in, numpy out).

Library-wide conventions enforced here, so every dataset gets them for free:

* continuous ground truth (disparity, depth) comes back as float32 ``(H, W)`` with invalid pixels = ``+inf``;
* label maps come back as the stored integer indices (``255`` = ignore by convention);
* anything missing, truncated or in an unexpected layout raises :class:`DatasetFormatError` (or
  :class:`FileNotFoundError`) with the offending path and what was expected -- never a silently wrong array.

Each reader declares its format's :class:`~vitlab.core.data.contracts.FormatContract` (bit depth, channels,
legal values, ignore value) and holds every file against it with the one
:func:`~vitlab.core.data.contracts.check`.
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Union

import numpy as np
from PIL import Image

from vitlab.core.data.contracts import FormatContract, check, declares
from vitlab.core.errors import DatasetFormatError  # re-exported: readers raise it

__all__ = [
    "DatasetFormatError",
    "FormatContract",
    "array_to_image_tensor",
    "check",
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
            out = im.copy()  # copy() keeps the palette of "P" images
            out.format = im.format  # copy() drops it; the stored-encoding checks need it
            return out
    except Exception as e:  # PIL raises OSError, SyntaxError, ValueError, zlib errors, ... depending on codec
        raise DatasetFormatError(f"{p}: cannot decode as {what}: {type(e).__name__}: {e}") from e


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


PFM = FormatContract("PFM file", container="pfm", channels=(1, 3), dtype=("f",))
DISPARITY_PFM = FormatContract("PFM disparity map ('Pf', single channel)", container="pfm", channels=(1,),
                               layout="HW", dtype=("f",), warn_empty=True)


@declares(PFM)
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


@declares(DISPARITY_PFM)
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
    check(d, DISPARITY_PFM, path)
    return d


# --------------------------------------------------------------------------------------------------------------
# PNG ground truth
# --------------------------------------------------------------------------------------------------------------

KITTI_DISPARITY = FormatContract(
    "KITTI disparity map (16-bit greyscale PNG, d = v / 256)", bit_depth=(16,), channels=(1,),
    ignore_index=0, ignore_name="no ground truth", warn_empty=True)


@declares(KITTI_DISPARITY)
def read_kitti_disparity(path: PathLike) -> np.ndarray:
    """KITTI 2012/2015 disparity as float32 ``(H, W)``: ``d = v / 256``, ``v == 0`` -> ``+inf``.

    Only 16-bit greyscale PNGs are accepted: an 8-bit PNG divided by 256 would look plausible but be wrong.
    """
    p = _existing_file(path, KITTI_DISPARITY.name)
    im = open_image(p, KITTI_DISPARITY.name)
    check(im, KITTI_DISPARITY, p)
    v = _grey_array(im, p, KITTI_DISPARITY.name)
    check(v, KITTI_DISPARITY, p)
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


def scaled_contract(name: str, bit_depth: int | None = None, value_range: tuple[float, float] | None = None,
                    allowed_values: Sequence[int] | None = None, min_peak: int | None = None,
                    invalid_value: int | None = None, container: str = "image") -> FormatContract:
    """The contract of a scalar map stored as integers (:func:`read_png_scaled`'s keyword arguments)."""
    return FormatContract(name, container=container, bit_depth=(bit_depth,) if bit_depth else (8, 16),
                          channels=(1,), value_range=value_range,
                          allowed=None if allowed_values is None else tuple(int(v) for v in allowed_values),
                          ignore_index=invalid_value, ignore_name="invalid", min_peak=min_peak,
                          warn_empty=invalid_value is not None)


#: what :func:`read_png_scaled` enforces with its defaults (0 = invalid)
SCALED_PNG = scaled_contract("single-channel 8/16-bit ground-truth image", invalid_value=0)


@declares(SCALED_PNG, scale=1.0)
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
    contract: FormatContract | None = None,
) -> np.ndarray:
    """Scalar ground truth stored as integers: float32 ``(H, W)`` with ``d = v / scale`` and ``invalid_value`` -> ``+inf``.

    Accepts 8/16-bit single-channel PNG/PGM. Palette (``P``) images are converted through their palette to
    the grey value of each entry (never the raw index): Middlebury v2 ``groundtruth.png`` stores indices
    0..7 whose palette greys are the real ``16 * d`` values. Contrast with :func:`read_label_png`, which
    returns the indices themselves. Typical scales: Middlebury 2001/v2 16, 2003 quarter-size 4,
    2006 half-size 2, KITTI 256, NYU depth 1000 (-> metres), MultiMAE pseudo-depth 2**16.
    ``invalid_value=None`` marks nothing invalid.

    The file is held against ``contract`` (:func:`~vitlab.core.data.contracts.check`), by default the one
    the keywords describe (:func:`scaled_contract`): ``bit_depth`` is the stored bits per sample the format
    prescribes (the PNG header is read, so an 8-bit file never passes as 16-bit or the reverse);
    ``value_range`` bounds the stored values of valid pixels, ``allowed_values`` lists every legal stored
    value (masks), and ``min_peak`` refuses a file whose valid values all lie below it (8-bit data written
    into a 16-bit file). A violation raises :class:`DatasetFormatError` naming the file and the format.
    """
    if not (math.isfinite(scale) and scale > 0):
        raise ValueError(f"read_png_scaled({path}): scale must be positive and finite, got {scale}")
    if contract is None:
        name = format_name or f"single-channel 8/16-bit ground-truth image (value = {scale:g} x quantity)"
        contract = scaled_contract(name, bit_depth, value_range, allowed_values, min_peak, invalid_value)
    p = _existing_file(path, contract.name)
    im = open_image(p, contract.name)
    check(im, contract, p)
    v = _palette_to_grey(im, p, contract.name) if im.mode == "P" else _grey_array(im, p, contract.name)
    check(v, contract, p)
    d = v.astype(np.float32) / np.float32(scale)
    if invalid_value is not None:
        d[v == invalid_value] = np.inf
    return d


def depth_png_contract(scale: float = 1000.0) -> FormatContract:
    """A 16-bit depth PNG holding ``v = depth x scale`` (0 = invalid): 8-bit data in it is refused."""
    return scaled_contract(f"depth PNG (16-bit greyscale, v = depth x {scale:g}, 0 = invalid)", bit_depth=16,
                           min_peak=256, invalid_value=0, container="png")


@declares(depth_png_contract())
def read_depth_png(path: PathLike, scale: float = 1000.0) -> np.ndarray:
    """Depth PNG (NYU-style millimetres by default) as float32 metres, 0 -> ``+inf``.

    The format is a 16-bit greyscale PNG holding ``v = depth x scale``: an 8-bit file is refused (its
    values would come out 2-3 orders of magnitude off), and so is a 16-bit file whose valid values all fit
    in 8 bits (below 256 mm everywhere at the default scale: 8-bit data widened to 16 bits).
    """
    return read_png_scaled(path, scale=scale, invalid_value=0, contract=depth_png_contract(scale))


def middlebury_contract(scale: float) -> FormatContract:
    """Middlebury 2001-2006 / v2: an 8-bit grey (or grey-palette) image, ``v = disparity x scale``."""
    return scaled_contract(f"Middlebury disparity image (8-bit greyscale, v = disparity x {scale:g}, 0 = unknown)",
                           bit_depth=8, invalid_value=0)


@declares(middlebury_contract(16.0), scale=16.0)
def read_middlebury_disparity(path: PathLike, scale: float) -> np.ndarray:
    """Middlebury 2001-2006 / v2 disparity image (``disp*.png``, ``truedisp*.pgm``, ``groundtruth.png``).

    The format is an 8-bit greyscale (or grey-palette) image with ``v = disparity x scale`` and 0 = unknown
    (2006: ``scale`` 1/2/3 for full/half/third size; 2001 and v2: 8, Tsukuba 16; 2003 quarter size: 4). A 16-bit file
    is refused: read as 8-bit disparities it would be off by orders of magnitude.
    """
    return read_png_scaled(path, scale=scale, invalid_value=0, contract=middlebury_contract(scale))


LABEL_PNG = FormatContract("label PNG (palette, 8-bit or 16-bit greyscale)", bit_depth=(8, 16), channels=(1,))


@declares(LABEL_PNG)
def read_label_png(path: PathLike, contract: FormatContract = LABEL_PNG) -> np.ndarray:
    """Label map as stored: uint8 for 8-bit/palette PNGs, uint16 for 16-bit ones (e.g. instance ids).

    For palette (``P``) PNGs the raw indices ARE the labels (VOC-style: the palette only colours them for
    viewing), so no palette conversion happens here -- the opposite of :func:`read_png_scaled`. Colour-coded
    RGB label maps (e.g. ADE20K full-format ``_seg.png``) need a dataset-specific decoder and are refused.
    A dataset passes its own ``contract`` (bit depth, legal ids, ignore index), checked on the stored ids.
    """
    p = _existing_file(path, contract.name)
    im = open_image(p, contract.name)
    check(im, contract, p)
    lab = np.array(im, dtype=np.uint8) if im.mode == "P" else np.array(_grey_array(im, p, contract.name))
    check(lab, contract, p)
    return lab


# --------------------------------------------------------------------------------------------------------------
# images
# --------------------------------------------------------------------------------------------------------------

#: photos for uint8 pipelines: 8 bits per sample, grey / grey+alpha / RGB / RGBA / palette
PHOTO_8BIT = FormatContract("image for a uint8 pipeline", container="image", bit_depth=(1, 8), channels=(1, 2, 3, 4),
                            hint="convert it to 8 bits per sample, or read it with read_image_tensor(path, "
                                 "uint8=False), which keeps 16 bits")
#: photos for float pipelines: 16-bit files keep their precision
PHOTO = FormatContract("image", container="image", bit_depth=(1, 8, 16), channels=(1, 2, 3, 4))


def require_dir(path: PathLike, layout: str, what: str) -> Path:
    """``path`` if it is a directory; otherwise an error naming it, what it should be and the expected layout."""
    p = Path(path)
    if not p.exists():
        raise FileNotFoundError(f"{p}: {what} not found; expected layout:\n{layout}")
    if not p.is_dir():
        raise DatasetFormatError(f"{p}: {what} is not a directory; expected layout:\n{layout}")
    return p


def _photo_array(path: PathLike, contract: FormatContract) -> np.ndarray:
    """``(H, W, 3)`` uint8, or uint16 for a 16-bit greyscale file; grey replicated, alpha dropped."""
    p = _existing_file(path, contract.name)
    im = open_image(p, contract.name)
    check(im, contract, p)
    if im.mode.startswith("I"):  # 16-bit greyscale (PNG/PGM); Pillow widens some files to int32 "I"
        return np.repeat(_grey_array(im, p, contract.name)[..., None], 3, axis=-1)
    try:
        rgb = im.convert("RGB")
    except ValueError as e:
        raise DatasetFormatError(f"{p}: {contract.name} of mode {im.mode!r} cannot be converted to RGB") from e
    return np.asarray(rgb, dtype=np.uint8)


def array_to_image_tensor(a: np.ndarray, what: str = "image"):
    """``(H, W)``, ``(H, W, 1..4)`` array -> float32 ``(3, H, W)`` in [0, 1]: uint8 / 255, uint16 / 65535,
    float kept; grey replicated, alpha dropped. The one conversion of photos into float tensors."""
    import torch

    if a.ndim == 2:
        a = a[..., None]
    if a.ndim != 3 or a.shape[-1] not in (1, 2, 3, 4):
        raise ValueError(f"{what}: expected an (H, W), (H, W, 3) or (H, W, 4) image, got shape {a.shape}")
    if a.shape[-1] in (2, 4):  # grey+alpha / RGBA: drop alpha
        a = a[..., :-1]
    if a.dtype == np.uint8:
        x = torch.from_numpy(np.array(a, copy=True)).float().div_(255.0)
    elif a.dtype == np.uint16:
        x = torch.from_numpy(a.astype(np.float32)).div_(65535.0)
    elif np.issubdtype(a.dtype, np.floating):
        x = torch.from_numpy(a.astype(np.float32))
    else:
        raise ValueError(f"{what}: unsupported dtype {a.dtype}; expected uint8, uint16 or float in [0, 1]")
    x = x.permute(2, 0, 1)
    return x.expand(3, -1, -1).contiguous() if x.shape[0] == 1 else x.contiguous()


@declares(PHOTO_8BIT, uint8=True)
@declares(PHOTO, uint8=False)
def read_image_tensor(path: PathLike, uint8: bool = True):
    """An image file as a ``(3, H, W)`` torch tensor: uint8 (default) or float32 in [0, 1].

    The one image reader of every vitlab dataset. ``uint8=False`` also reads 16-bit greyscale files at
    full precision (``v / 65535``); ``uint8=True`` refuses them rather than dropping 8 bits (or clipping
    them to white): read them with ``uint8=False``. 16-bit colour PNGs come through Pillow at 8 bits.
    """
    import torch

    if not uint8:
        return array_to_image_tensor(_photo_array(path, PHOTO), str(path))
    return torch.from_numpy(read_image(path)).permute(2, 0, 1).contiguous()


@declares(PHOTO_8BIT)
def read_image(path: PathLike) -> np.ndarray:
    """8-bit RGB ``(H, W, 3)`` from PNG/JPEG/PPM/PGM/...; grey is replicated, alpha dropped.

    16-bit/float images are refused rather than silently truncated or clipped (a 16-bit grey PNG would
    come out all white); read 16-bit photos with ``read_image_tensor(path, uint8=False)``.
    """
    return _photo_array(path, PHOTO_8BIT)
