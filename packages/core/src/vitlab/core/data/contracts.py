"""What each dataset file format allows, declared once per format, and the one check every reader runs.

A :class:`FormatContract` states a format's stored encoding (bit depth, channels, dtype, layout) and its
legal values (a range or a set, the ignore/invalid value). :func:`check` holds a decoded image or array
against it and raises :class:`~vitlab.core.errors.DatasetFormatError` with one line naming the file, the
format, what was found and what was expected -- a wrong value never reaches a loss as a silent ignore or
an ``IndexError`` without a file name. Readers declare their contract with :func:`declares`, which keeps
them in :data:`READERS`, so a test can feed every reader a file that breaks its contract.
"""

from __future__ import annotations

import struct
import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from vitlab.core.errors import DatasetFormatError

__all__ = [
    "READERS",
    "ContractViolation",
    "EmptyGroundTruthWarning",
    "FormatContract",
    "RegisteredReader",
    "check",
    "contract_of",
    "declares",
    "stored_bit_depth",
]


class ContractViolation(DatasetFormatError):
    """A file decoded, but its stored encoding or values break its format's contract (the data check sorts these
    apart from files that do not decode)."""


class EmptyGroundTruthWarning(UserWarning):
    """A ground-truth file without one valid pixel: it adds nothing to the loss or the metric."""


@dataclass(frozen=True)
class FormatContract:
    """The stored encoding and legal values of one file format.

    Args:
        name: the format as a user knows it ("PASCAL-MT semseg label"); every error message names it.
        container: the file kind (``"png"``, ``"image"`` for any format Pillow decodes, ``"npy"``,
            ``"pfm"``, ``"mat"``); tells the reader tests how to write a violating file.
        bit_depth: stored bits per sample allowed (PNG header, or the dtype of an integer array).
        channels: channel counts allowed (1 = greyscale or palette).
        dtype: numpy dtype kinds allowed for arrays (``"f"`` float, ``"u"``/``"i"`` integer).
        layout: ``"HW"`` (a single ``(H, W)`` map; a singleton third axis is tolerated) or ``"HWC"``.
        value_range: inclusive bounds of the valid stored values (``atol`` of slack for floats).
        allowed: every legal stored value (masks), checked with ``value_range``.
        ignore_index: the stored value that means "no ground truth here"; exempt from the value checks.
        ignore_name: what ``ignore_index`` means, for messages ("ignore", "no ground truth", "void").
        finite: refuse nan/inf.
        min_peak: refuse a file whose valid values all lie below it (8-bit data written into 16 bits).
        value_channel: for ``HWC`` files that keep the value in one channel (SYNTHIA: the last).
        key: the variable of a ``.mat`` file.
        warn_empty: warn (once per file) when no pixel is valid.
        hint: what to do about a violation (the error's second line).
    """

    name: str
    container: str = "png"
    bit_depth: tuple[int, ...] | None = None
    channels: tuple[int, ...] | None = None
    dtype: tuple[str, ...] | None = None
    layout: str | None = None
    value_range: tuple[float, float] | None = None
    allowed: tuple[int, ...] | None = None
    ignore_index: float | None = None
    ignore_name: str = "ignore"
    finite: bool = False
    atol: float = 0.0
    min_peak: float | None = None
    value_channel: int | None = None
    key: str | None = None
    warn_empty: bool = False
    hint: str | None = None

    def expected_values(self) -> str:
        """``0..20 or 255 (ignore)``: the legal values in words."""
        parts = []
        if self.allowed is not None:
            parts.append("one of " + ", ".join(str(v) for v in sorted(self.allowed)))
        if self.value_range is not None:
            lo, hi = self.value_range
            parts.append(f"{lo:g}..{hi:g}")
        text = " within ".join(parts) if parts else "any value"
        if self.ignore_index is not None:
            text += f" or {self.ignore_index:g} ({self.ignore_name})"
        return text


@dataclass(frozen=True)
class RegisteredReader:
    """A reader, the contract it enforces, and the arguments (besides the path) that select that contract."""

    reader: Callable[..., Any]
    contract: FormatContract
    kwargs: Mapping[str, Any] = field(default_factory=dict)

    @property
    def qualname(self) -> str:
        return f"{self.reader.__module__}.{self.reader.__qualname__}"


#: every reader that declared its contract with :func:`declares`, in import order
READERS: list[RegisteredReader] = []


def declares(contract: FormatContract, **kwargs: Any) -> Callable[[Callable], Callable]:
    """Decorator: ``reader`` enforces ``contract`` when called with ``kwargs`` (stack it for several)."""

    def register(reader: Callable) -> Callable:
        READERS.append(RegisteredReader(reader, contract, dict(kwargs)))
        reader.contracts = (*getattr(reader, "contracts", ()), contract)  # type: ignore[attr-defined]
        return reader

    return register


def contract_of(reader: Callable, **kwargs: Any) -> FormatContract:
    """The contract ``reader`` declared for ``kwargs`` (a wrapper of a reader declares the same one)."""
    for r in READERS:
        if r.reader is reader and dict(r.kwargs) == kwargs:
            return r.contract
    raise KeyError(f"{getattr(reader, '__qualname__', reader)} declares no contract for {kwargs}")


# ----------------------------------------------------------------------------------------------- stored encoding

_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
PNG_COLOR_TYPES = {0: "greyscale", 2: "RGB", 3: "palette", 4: "greyscale+alpha", 6: "RGBA"}
_BANDS = {1: "greyscale", 2: "greyscale+alpha", 3: "RGB", 4: "RGBA"}


def png_header(path: Path) -> tuple[int, int, int, int] | None:
    """(width, height, bit depth, colour type) from a PNG's IHDR chunk; None when the file is no PNG."""
    with open(path, "rb") as f:
        head = f.read(33)
    if len(head) < 33 or head[:8] != _PNG_SIGNATURE or head[12:16] != b"IHDR":
        return None
    width, height, depth, color = struct.unpack(">IIBB", head[16:26])
    return width, height, depth, color


def stored_bit_depth(im: Image.Image, path: Path) -> tuple[int, str]:
    """(bits per sample, description) of an image as stored in its file.

    PNGs are read from the header (Pillow widens some 8-bit files and narrows 16-bit colour ones); other
    formats from the Pillow mode. A palette PNG holds 8-bit palette entries whatever its index width.
    """
    head = png_header(path) if (im.format == "PNG" or path.suffix.lower() == ".png") else None
    if head is not None:
        _, _, depth, color = head
        found = f"{depth}-bit {PNG_COLOR_TYPES.get(color, f'colour type {color}')} PNG"
        return (8 if color == 3 else depth), found
    fmt = f"{im.format} " if im.format else ""
    if im.mode == "1":
        return 1, f"1-bit {fmt}image"
    if im.mode.startswith("I;16") or im.mode == "I":
        return 16, f"16-bit {fmt}image (mode {im.mode!r})"
    if im.mode == "F":
        return 32, f"32-bit float {fmt}image"
    return 8, f"8-bit {fmt}image (mode {im.mode!r})"


def _bands(im: Image.Image) -> int:
    return 1 if im.mode in ("P", "1") or im.mode.startswith("I") or im.mode == "F" else len(im.getbands())


def _channels_text(n: int) -> str:
    return f"{n} channel{'s' if n != 1 else ''} ({_BANDS[n]})" if n in _BANDS else f"{n} channels"


# ----------------------------------------------------------------------------------------------------- checks

_WARNED: set[str] = set()


def _fail(path: Path | str, contract: FormatContract, found: str, expected: str) -> DatasetFormatError:
    return ContractViolation(f"{path}: {contract.name} {found}, expected {expected}", hint=contract.hint)


def _found_values(bad: np.ndarray) -> str:
    """``value 250`` / ``values 250, 251 (+3 more)`` / ``values -0.5..255`` (floats)."""
    if bad.dtype.kind == "f":
        lo, hi = float(bad.min()), float(bad.max())
        return f"value {lo:g}" if lo == hi else f"values {lo:g}..{hi:g}"
    uniq = np.unique(bad)
    shown = ", ".join(str(v) for v in uniq[:5].tolist())
    more = f" (+{len(uniq) - 5} more)" if len(uniq) > 5 else ""
    return f"value{'s' if len(uniq) > 1 else ''} {shown}{more}"


def _check_image(im: Image.Image, c: FormatContract, p: Path, size: tuple[int, int] | None) -> None:
    if c.container == "png" and png_header(p) is None:
        raise _fail(p, c, f"is not a PNG file (no PNG signature/IHDR; Pillow reads it as {im.format})", "a PNG")
    if c.bit_depth is not None:
        depth, found = stored_bit_depth(im, p)
        if depth not in c.bit_depth:
            want = " or ".join(f"{d}-bit" for d in c.bit_depth)
            raise _fail(p, c, f"is stored as {'an' if found.startswith('8') else 'a'} {found}", want)
    if c.channels is not None:
        n = _bands(im)
        if n not in c.channels:
            want = " or ".join(_channels_text(k) for k in c.channels)
            raise _fail(p, c, f"has {_channels_text(n)} (mode {im.mode!r})", want)
    if size is not None and (im.size[1], im.size[0]) != tuple(size):
        raise _fail(p, c, f"is {im.size[1]}x{im.size[0]}", f"{size[0]}x{size[1]} (the size of its image)")


def _check_array(a: np.ndarray, c: FormatContract, p: Path, size: tuple[int, int] | None) -> None:
    if c.dtype is not None and a.dtype.kind not in c.dtype:
        kinds = {"f": "float", "u": "unsigned integer", "i": "integer", "b": "boolean"}
        raise _fail(p, c, f"has dtype {a.dtype}", " or ".join(kinds.get(k, k) for k in c.dtype) + " values")
    if c.bit_depth is not None and a.dtype.kind in "ui" and a.dtype.itemsize * 8 not in c.bit_depth:
        raise _fail(p, c, f"is stored with {a.dtype.itemsize * 8}-bit samples ({a.dtype})",
                    " or ".join(f"{d}-bit" for d in c.bit_depth))
    if c.layout == "HW":
        if a.ndim == 2:
            hw = a.shape
        elif a.ndim == 3 and a.shape[-1] == 1:
            hw = a.shape[:2]
        elif a.ndim == 3 and a.shape[0] == 1:
            hw = a.shape[1:]
        else:
            raise _fail(p, c, f"has shape {a.shape}", "a single (H, W) map")
    elif c.layout == "HWC":
        if a.ndim != 3 or (c.channels is not None and a.shape[-1] not in c.channels):
            want = "(H, W, C)" if c.channels is None else " or ".join(f"(H, W, {k})" for k in c.channels)
            raise _fail(p, c, f"has shape {a.shape}", want)
        hw = a.shape[:2]
    else:
        hw = a.shape[-2:] if a.ndim >= 2 else None
    if size is not None and hw is not None and tuple(hw) != tuple(size):
        raise _fail(p, c, f"has shape {a.shape}",
                    f"(H, W) = {tuple(size)} (the size of its image){', C last' if c.layout == 'HWC' else ''}")
    v = a[..., c.value_channel] if (c.value_channel is not None and a.ndim == 3) else a
    if v.dtype.kind not in "fuib":
        return
    finite = np.isfinite(v) if v.dtype.kind == "f" else np.ones(v.shape, bool)
    if c.finite and not finite.all():
        raise _fail(p, c, f"has {int((~finite).sum())} non-finite values (nan/inf)", "finite values")
    valid = finite if c.ignore_index is None else finite & (v != c.ignore_index)
    if c.allowed is not None:
        bad = valid & ~np.isin(v, np.asarray(c.allowed))
        if bad.any():
            raise _fail(p, c, f"has {_found_values(v[bad])}", c.expected_values())
    if c.value_range is not None:
        lo, hi = c.value_range
        bad = valid & ((v < lo - c.atol) | (v > hi + c.atol))
        if bad.any():
            raise _fail(p, c, f"has {_found_values(v[bad])}", c.expected_values())
    if c.min_peak is not None and valid.any() and v[valid].max() < c.min_peak:
        raise _fail(p, c, f"has every valid value below {c.min_peak:g} (max {v[valid].max()}): 8-bit data "
                          "or another unit", f"values reaching {c.min_peak:g} or more")
    if c.warn_empty:
        pixel_valid = valid.any(-1) if (c.layout == "HWC" and c.value_channel is None and v.ndim == 3) else valid
        if not pixel_valid.any():
            key = str(p)
            if key not in _WARNED:
                _WARNED.add(key)
                what = "all non-finite" if c.ignore_index is None else f"all {c.ignore_index:g} ({c.ignore_name})"
                warnings.warn(f"{p}: {c.name} has no valid pixel ({what}); it adds nothing to training or "
                              "evaluation", EmptyGroundTruthWarning, stacklevel=3)


def check(data: np.ndarray | Image.Image, contract: FormatContract, path: str | Path,
          size: tuple[int, int] | None = None) -> None:
    """Hold a decoded file against its format's contract; a violation raises a one-line DatasetFormatError.

    ``data`` is the Pillow image (its stored bit depth, channels and size are checked) or the array of
    stored values (dtype, layout, values, ignore index, emptiness). ``size`` is the ``(H, W)`` the file must
    have, usually its image's: a map stored transposed is refused, never reshaped.
    """
    p = Path(path)
    if isinstance(data, Image.Image):
        _check_image(data, contract, p, size)
    else:
        _check_array(np.asarray(data), contract, p, size)
