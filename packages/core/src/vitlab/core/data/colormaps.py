"""Colour maps for logging and prediction files: scalar maps (turbo, magma) and label maps (PASCAL VOC palette,
the Cityscapes train-id palette)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

__all__ = ["CITYSCAPES_PALETTE", "colorize", "colorize_labels", "label_palette", "palette"]

# --------------------------------------------------------------------------------------------------------------

# 33 evenly spaced knots per colormap (RRGGBB), linearly interpolated: within ~3/255 of the full 256-entry
# tables, with no matplotlib dependency.
_CMAP_KNOTS = {
    "turbo": "30123b 392a73 4040a2 4456c7 466be3 4680f6 4294ff 37a8fa 28bceb 1ccdd8 18ddc2 1fe9af 32f298 4ef97d "
    "6dfe62 8bff4b a4fc3c b9f635 cdec34 dfdf37 eecf3a f8be39 fdac34 fe962b fb7e21 f46617 eb500e df3f08 d02f05 "
    "be2102 a91601 920b01 7a0403",
    "magma": "000004 030312 0a0822 130d34 1d1147 29115a 36106b 440f76 51127c 5d177f 6a1c81 762181 832681 902a81 "
    "9c2e7f aa337d b73779 c43c75 d0416f dc4869 e75263 ef5d5e f56b5c f9795d fc8961 fd9869 fea772 feb67c fec488 "
    "fed395 fde2a3 fcf0b2 fcfdbf",
}
_LUT_CACHE: dict[str, np.ndarray] = {}


def _lut(cmap: str) -> np.ndarray:
    """256x3 uint8 lookup table built once per colormap from the knots above."""
    if cmap not in _CMAP_KNOTS:
        raise ValueError(f"colorize: unknown cmap {cmap!r}; choose one of {sorted(_CMAP_KNOTS)}")
    if cmap not in _LUT_CACHE:
        knots = np.array(
            [[int(h[i : i + 2], 16) for i in (0, 2, 4)] for h in _CMAP_KNOTS[cmap].split()], float
        )
        xk = np.linspace(0.0, 1.0, len(knots))
        x = np.linspace(0.0, 1.0, 256)
        lut = np.stack([np.interp(x, xk, knots[:, c]) for c in range(3)], axis=1)
        _LUT_CACHE[cmap] = np.round(lut).astype(np.uint8)
    return _LUT_CACHE[cmap]


def colorize(
    array: np.ndarray, vmin: float | None = None, vmax: float | None = None, cmap: str = "turbo"
) -> np.ndarray:
    """Map an ``(H, W)`` scalar map to uint8 RGB for logging; invalid (inf/nan) pixels are drawn black.

    ``vmin``/``vmax`` default to the finite range, so holes never stretch the colour scale.
    """
    a = np.asarray(array, dtype=np.float64)
    if a.ndim != 2:
        raise ValueError(f"colorize: expected an (H, W) array, got shape {a.shape}")
    lut = _lut(cmap)
    finite = np.isfinite(a)
    out = np.zeros(a.shape + (3,), dtype=np.uint8)
    if not finite.any():
        return out
    lo = float(a[finite].min()) if vmin is None else float(vmin)
    hi = float(a[finite].max()) if vmax is None else float(vmax)
    t = (a[finite] - lo) / (hi - lo) if hi > lo else np.zeros(int(finite.sum()))
    out[finite] = lut[np.round(np.clip(t, 0.0, 1.0) * 255).astype(np.intp)]
    return out


def label_palette(num_classes: int) -> np.ndarray:
    """Deterministic ``(N, 3)`` uint8 palette, identical to the PASCAL VOC one (class 0 = black).

    Colours come from spreading the bits of the class id over the R, G, B high bits, so neighbouring ids
    get clearly different colours and VOC palette PNGs display the same.
    """
    if num_classes < 0:
        raise ValueError(f"label_palette: num_classes must be >= 0, got {num_classes}")
    pal = np.zeros((num_classes, 3), dtype=np.uint8)
    for k in range(num_classes):
        r = g = b = 0
        c = k
        for shift in range(7, -1, -1):  # id bit 3j+ch goes to bit (7-j) of channel ch
            r |= (c & 1) << shift
            g |= ((c >> 1) & 1) << shift
            b |= ((c >> 2) & 1) << shift
            c >>= 3
        pal[k] = (r, g, b)
    return pal


#: the Cityscapes colours of the 19 train ids (cityscapesScripts ``labels.py``), road .. bicycle
CITYSCAPES_PALETTE = np.array([
    (128, 64, 128), (244, 35, 232), (70, 70, 70), (102, 102, 156), (190, 153, 153), (153, 153, 153),
    (250, 170, 30), (220, 220, 0), (107, 142, 35), (152, 251, 152), (70, 130, 180), (220, 20, 60), (255, 0, 0),
    (0, 0, 142), (0, 0, 70), (0, 60, 100), (0, 80, 100), (0, 0, 230), (119, 11, 32)], dtype=np.uint8)

#: palette names accepted by :func:`palette`
PALETTES = ("voc", "cityscapes")


def palette(name: str, num_classes: int) -> np.ndarray:
    """``(num_classes, 3)`` uint8 colours of a named palette: ``voc`` (:func:`label_palette`) or ``cityscapes``
    (:data:`CITYSCAPES_PALETTE`, ids past 18 continue with the VOC colours)."""
    if name == "voc":
        return label_palette(num_classes)
    if name == "cityscapes":
        pal = label_palette(num_classes)
        n = min(num_classes, len(CITYSCAPES_PALETTE))
        pal[:n] = CITYSCAPES_PALETTE[:n]
        return pal
    raise ValueError(f"palette: unknown palette {name!r}; expected one of {PALETTES}")


def colorize_labels(
    labels: np.ndarray,
    num_classes: int,
    ignore_index: int = 255,
    ignore_color: Sequence[int] = (255, 255, 255),
) -> np.ndarray:
    """Colour an integer label map with :func:`label_palette`; ``ignore_index`` pixels get ``ignore_color``.

    Ignore defaults to white because class 0 is black in the VOC palette. Out-of-range ids raise instead
    of being drawn with some arbitrary colour.
    """
    lab = np.asarray(labels)
    if lab.ndim != 2 or not np.issubdtype(lab.dtype, np.integer):
        raise ValueError(f"colorize_labels: expected an (H, W) integer array, got {lab.dtype} {lab.shape}")
    lab = lab.astype(np.int64)
    ignore = lab == ignore_index
    bad = ~ignore & ((lab < 0) | (lab >= num_classes))
    if bad.any():
        raise ValueError(
            f"colorize_labels: ids {np.unique(lab[bad])[:10].tolist()} are outside 0..{num_classes - 1} "
            f"and are not the ignore index {ignore_index}"
        )
    out = np.empty(lab.shape + (3,), dtype=np.uint8)
    out[~ignore] = label_palette(num_classes)[lab[~ignore]]
    out[ignore] = np.asarray(ignore_color, dtype=np.uint8)
    return out
