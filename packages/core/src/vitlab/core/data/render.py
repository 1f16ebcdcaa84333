"""The planar-layer renderer behind :class:`~vitlab.core.data.SyntheticScenes` and
:class:`~vitlab.core.data.SyntheticStereo`: scene constants, the procedural noise table, layer/scene records,
plane geometry and argument checks. The scene model and why the stereo pair is exact are described in
:mod:`vitlab.core.data.synthetic`.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

__all__ = [
    "BASELINE",
    "BOARDS",
    "CHECKER",
    "CLASS_NAMES",
    "CONCENTRIC",
    "DOMAINS",
    "ELLIPSE",
    "FAMILIES",
    "Layer",
    "MODALITIES",
    "NUM_CLASSES",
    "NUM_PARTS",
    "PART_NAMES",
    "RECTANGLE",
    "RIGHT_OCCLUSION_TOL",
    "RING",
    "STAR",
    "STRIPES",
    "Scene",
    "TEX_N",
    "TRIANGLE",
    "TRI_NORMALS",
    "check_int",
    "hsv_to_rgb",
    "noise_table",
    "parse_domain",
    "parse_modalities",
    "parse_size",
    "plane_normal",
    "prime_malloc",
    "right_coef",
    "sample_noise",
]

FAMILIES = ("ellipse", "rectangle", "triangle", "ring", "star")
CLASS_NAMES = ("ground", "wall", *FAMILIES)
NUM_CLASSES = len(CLASS_NAMES)
PART_NAMES = ("background", "part1", "part2")
NUM_PARTS = len(PART_NAMES)
#: Stereo baseline in metres; with ``f = W`` the nearest allowed surface sits at ``BASELINE * W / max_disparity``.
BASELINE = 0.3
DOMAINS = ("source", "target", "mixed")
MODALITIES = (
    "image",
    "right",
    "disparity",
    "depth",
    "semantic",
    "parts",
    "instance",
    "saliency",
    "edges",
    "normals",
    "occlusion",
    "label",
    "domain",
)

ELLIPSE, RECTANGLE, TRIANGLE, RING, STAR = range(len(FAMILIES))
STRIPES, CHECKER, CONCENTRIC, BOARDS = range(4)
TEX_N = 256  # noise table side (power of two so wrapping is a bit-mask)
TRI_NORMALS = [(math.cos(a), math.sin(a)) for a in (math.pi / 2, 7 * math.pi / 6, 11 * math.pi / 6)]
RIGHT_OCCLUSION_TOL = 1e-3  # pixels; planes closer than this in disparity count as the same surface


# ----------------------------------------------------------------------------------------------------
# Procedural noise
# ----------------------------------------------------------------------------------------------------
@functools.lru_cache(maxsize=1)
def noise_table() -> np.ndarray:
    """Periodic band-limited noise (periods 5-64 texels, unit std) stored as bilinear quads.

    One shared table sampled through a random affine map per layer gives multi-scale texture with a
    single bilinear lookup, instead of summing octaves per pixel. It is fixed (not seeded by the
    dataset) so that a scene depends only on ``(seed, index, domain)``. Entry ``i = row * N + col``
    holds the 2x2 neighbourhood ``(t00, t01, t10, t11)`` as one complex128, so a lookup is a single
    16-byte gather instead of four.
    """
    rng = np.random.default_rng(0x5EED)
    n = TEX_N
    fy = np.fft.fftfreq(n)[:, None]
    fx = np.fft.rfftfreq(n)[None, :]
    freq = np.hypot(fx, fy)
    band = (freq >= 1.0 / 64) & (freq <= 1.0 / 5)
    amp = np.where(band, np.maximum(freq, 1e-6) ** -0.5, 0.0)
    field_ = np.fft.irfft2(np.fft.rfft2(rng.standard_normal((n, n))) * amp, s=(n, n))
    field_ = ((field_ - field_.mean()) / field_.std()).astype(np.float32)
    grid = np.pad(field_, ((0, 1), (0, 1)), mode="wrap")
    quads = np.stack([grid[:-1, :-1], grid[:-1, 1:], grid[1:, :-1], grid[1:, 1:]], axis=-1)
    return np.ascontiguousarray(quads.reshape(n * n, 4)).view(np.complex128).ravel()


def sample_noise(table: np.ndarray, u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Bilinear, periodic lookup of the noise table at continuous texel coordinates."""
    fu = np.floor(u)
    fv = np.floor(v)
    wu = u - fu
    wv = v - fv
    i = (fv.astype(np.int32) & (TEX_N - 1)) * TEX_N + (fu.astype(np.int32) & (TEX_N - 1))
    quad = np.take(table, i).view(np.float32).reshape(-1, 4)
    t00, t01, t10, t11 = quad[:, 0], quad[:, 1], quad[:, 2], quad[:, 3]
    top = t00 + wu * (t01 - t00)
    bot = t10 + wu * (t11 - t10)
    return top + wv * (bot - top)


_MALLOC_PRIMED = False


def prime_malloc() -> None:
    """Free one untouched 16 MiB block once per process so glibc stops trimming the heap after each sample.

    glibc raises its mmap/trim thresholds when a large mmapped block is freed; without that, the few MB
    of arrays a 224x224 sample allocates are returned to the OS and page-faulted back for every sample
    (~30% of the time at 224x224). Harmless elsewhere: the block is never touched.
    """
    global _MALLOC_PRIMED
    if not _MALLOC_PRIMED:
        _MALLOC_PRIMED = True
        del_me = np.empty(16 << 20, np.uint8)
        del del_me


def hsv_to_rgb(h: np.ndarray, s: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Vectorised HSV -> RGB for a handful of palette entries; returns (3, n)."""
    h = np.mod(h, 1.0)
    out = np.empty((3, h.shape[0]))
    for ch, n in enumerate((5.0, 3.0, 1.0)):
        k = np.mod(n + 6.0 * h, 6.0)
        out[ch] = v - v * s * np.clip(np.minimum(k, 4.0 - k), 0.0, 1.0)
    return out


# ----------------------------------------------------------------------------------------------------
# Scene description (geometry + domain-independent random variates)
# ----------------------------------------------------------------------------------------------------
@dataclass
class Layer:
    """One planar layer. ``coef`` = (a, b, c) of the LEFT disparity ``a x + b y + c`` (pixels)."""

    coef: tuple[float, float, float]
    semantic: int
    instance: int
    family: int = -1  # -1 for ground/wall (infinite planes without mask)
    centre: tuple[float, float] = (0.0, 0.0)
    radius: float = 1.0
    rot: tuple[float, float] = (1.0, 0.0)  # (cos, sin) of the object's in-plane rotation
    inv_aspect: float = 1.0  # 1 / minor-axis ratio applied to the local v coordinate
    shape_param: float = 0.0  # ring inner radius or star inner radius
    split: tuple[float, float] = (1.0, 0.0)  # unit normal of the part-splitting line (local frame)
    tex: dict[str, float] = field(default_factory=dict)  # texture variates, domain-independent
    colour: tuple[float, ...] = ()  # (uh, us, uv, dh) palette variates, mapped per domain


@dataclass
class Scene:
    layers: list[Layer]
    light: tuple[float, float, float, float]  # (lx, ly, ambient, noise variate) used by the target domain


def right_coef(coef: tuple[float, float, float]) -> tuple[float, float, float]:
    """Disparity of a layer as an affine function of RIGHT-image coordinates: (a x_r + b y + c)/(1-a)."""
    a, b, c = coef
    s = 1.0 / (1.0 - a)
    return a * s, b * s, c * s


def plane_normal(coef: tuple[float, float, float], f: float, cx: float, cy: float) -> np.ndarray:
    """Camera-facing unit normal of the plane with disparity ``a x + b y + c``.

    ``1/Z`` is proportional to ``n . ray`` with ``ray = ((x-cx)/f, (y-cy)/f, 1)``, so the plane normal is
    parallel to ``(a f, b f, a cx + b cy + c)``; the minus sign makes it point towards the camera.
    """
    a, b, c = coef
    n = np.array([a * f, b * f, a * cx + b * cy + c])
    return -n / np.linalg.norm(n)


# ----------------------------------------------------------------------------------------------------
# Dataset
# ----------------------------------------------------------------------------------------------------
def check_int(name: str, value: Any, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise ValueError(f"`{name}` must be an integer >= {minimum}, got {value!r}")
    return int(value)


def parse_size(size: Any) -> tuple[int, int]:
    if isinstance(size, (int, np.integer)) and not isinstance(size, bool):
        size = (int(size), int(size))
    if (
        not isinstance(size, (tuple, list))
        or len(size) != 2
        or not all(isinstance(s, (int, np.integer)) and not isinstance(s, bool) and s >= 16 for s in size)
    ):
        raise ValueError(f"`size` must be an int or an (H, W) pair of ints, each >= 16, got {size!r}")
    return int(size[0]), int(size[1])


def parse_modalities(modalities: Sequence[str] | None) -> tuple[str, ...]:
    if modalities is None:
        return MODALITIES
    if isinstance(modalities, str):
        modalities = [modalities]
    unknown = [m for m in modalities if m not in MODALITIES]
    if unknown:
        raise ValueError(f"`modalities` has unknown names {unknown}; valid names are {list(MODALITIES)}")
    if not modalities:
        raise ValueError(f"`modalities` must be None (all) or a non-empty subset of {list(MODALITIES)}")
    return tuple(dict.fromkeys(modalities))


def parse_domain(domain: str, name: str = "domain") -> str:
    if domain not in DOMAINS:
        raise ValueError(f"`{name}` must be one of {list(DOMAINS)}, got {domain!r}")
    return domain
