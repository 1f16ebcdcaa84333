"""FlyingThings-style procedural stereo pairs whose disparity cannot be read off one view.

Why a second generator
----------------------
:class:`~vitlab.core.data.synthetic.SyntheticScenes` renders one fixed rig looking at a ground plane and a
back wall with a few objects whose texture scale follows depth. A network can predict its disparity from
the left image alone (image row, layer type, texture frequency) and never learns to match. FlyingThings3D
(Mayer et al., CVPR 2016, "A Large Dataset to Train Convolutional Networks for Disparity, Optical Flow,
and Scene Flow Estimation") removes such cues by flying many randomly shaped, randomly textured objects at
random depths in front of a random background with a randomised camera; this class follows that recipe
with the exact planar renderer of ``SyntheticScenes`` (same z-buffer, same closed-form right view).

Scene model (every draw comes from ``np.random.default_rng([seed, index])``)
----------------------------------------------------------------------------
* Camera: focal ``f = W * U(0.6, 1.6)`` (horizontal field of view ~35-80 degrees) and ``f * B`` drawn so that
  the nearest allowed depth ``Z = 1`` has disparity ``max_disparity * U(0.25, 1)``; disparity is ``f B / Z``.
* Depths: objects at ``Z ~ U(1, z_far)`` with ``z_far ~ U(3, 8)``; uniform depth gives the long tail of
  disparity (density ~ 1/d^2), as in FlyingThings3D, whose tail runs past 192 px at 960 px width (the
  standard SceneFlow protocol masks |d| >= 192). ``max_disparity`` defaults to ``192 * W / 512``.
* Background: two large planes at ``Z ~ z_far * U(1, 1.5)``, random tilt (<= 50 degrees) and azimuth; the
  nearer one is visible at each pixel, so the background is a random ridge, not a ground/wall layout.
* Objects: ``min_objects``..``max_objects`` of five shape families, random in-plane rotation, aspect and
  slant (60 % tilted by up to 60 degrees), centred anywhere in the frame. Their image size is drawn
  log-uniformly (radius 4-35 % of the short side) **independently of depth**, as are their image position,
  texture and colour: size, row, brightness and texture frequency carry no information about disparity.
* Textures (in left-image coordinates, shared exactly by both views): stripes, checkers, rings,
  1/f fractal noise (the power spectrum of natural images) and turbulence "marble", each with random
  scale, orientation and HSV colours; every layer is textured, so no region is ambiguous by construction
  (repetitive patterns still are, as in FlyingThings3D).
* Photometry: after rendering, each view gets its own exposure gain, per-channel white balance, gamma and
  Gaussian sensor noise (``photometric``), and optionally a global vertical offset of the right view
  (``vertical_shift``, off by default) that the disparity does not compensate.

Disparity is exact and every left pixel is valid; ``occlusion`` is True where the left surface point is
hidden in, or outside, the right view (z-buffer at the corresponding right position, as in
``SyntheticScenes``).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from vitlab.core.data.render import (
    FAMILIES,
    RIGHT_OCCLUSION_TOL,
    RING,
    STAR,
    TEX_N,
    Layer,
    Scene,
    check_int,
    hsv_to_rgb,
    prime_malloc,
    sample_noise,
)
from vitlab.core.data.synthetic import SyntheticScenes

__all__ = ["STEREO_MODALITIES", "SyntheticStereo"]

STEREO_MODALITIES = ("image", "right", "disparity", "occlusion", "instance")
_FRACTAL, _MARBLE = 4, 5  # texture kinds added to SyntheticScenes' stripes (0), checker (1), rings (2)
_KIND_CDF = np.cumsum([0.15, 0.15, 0.1, 0.0, 0.35, 0.25])  # kind 3 (boards, depth-dependent) never drawn
_MAX_OBJECTS = 40  # paint ids 2 * layer + part must fit in int8


def _range(name: str, value: Any, lo: float, hi: float) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not lo <= value <= hi:
        raise ValueError(f"`{name}` must be a number in [{lo}, {hi}], got {value!r}")
    return float(value)


class SyntheticStereo(SyntheticScenes):
    """Index-seeded FlyingThings-style stereo pairs (see the module docstring for the scene model).

    Args:
        num_samples: dataset length.
        size: ``(H, W)`` or one int.
        seed: scene stream; sample ``i`` is a pure function of ``(seed, i)`` and the arguments below.
        modalities: subset of :data:`STEREO_MODALITIES` (default: image, right, disparity, occlusion).
        min_objects, max_objects: objects per scene (1 <= min <= max <= 40). FlyingThings3D scenes are
            cluttered; the defaults 6-16 (a choice, not a FlyingThings3D figure) keep 64x128 frames
            cluttered but not fully covered.
        max_disparity: largest disparity in pixels; ``None`` = ``192 * W / 512`` (the SceneFlow evaluation
            cap at 960 px, applied at 512 px and scaled with width). At most ``W / 2``.
        photometric: independent exposure (x U(0.75, 1.33) log-uniform), white balance (x U(0.95, 1.05) per
            channel), gamma (U(0.75, 1.33) log-uniform) and noise (std U(0, 0.02)) per view. Off gives
            views that agree exactly at corresponding points (up to resampling).
        vertical_shift: largest |offset| in pixels of the right view's rows (U(-s, s) per pair, linear
            resampling); a rectification error the disparity does not model. 0 (default) = off.

    Keys: ``image``/``right`` float32 (3, H, W) in [0, 1], ``disparity`` float32 (1, H, W), ``occlusion``
    bool (1, H, W), ``instance`` int64 (H, W) (0 background, ``1 + j`` object j), ``index`` int64.
    """

    def __init__(
        self,
        num_samples: int = 1000,
        size: int | tuple[int, int] = (64, 128),
        seed: int = 0,
        modalities: Sequence[str] | None = None,
        min_objects: int = 6,
        max_objects: int = 16,
        max_disparity: float | None = None,
        photometric: bool = True,
        vertical_shift: float = 0.0,
    ) -> None:
        if modalities is None:
            modalities = STEREO_MODALITIES[:4]
        if isinstance(modalities, str):
            modalities = [modalities]
        bad = [m for m in modalities if m not in STEREO_MODALITIES]
        if bad or not modalities:
            raise ValueError(
                f"`modalities` must be a non-empty subset of {list(STEREO_MODALITIES)}, "
                f"got {list(modalities)}"
            )
        super().__init__(num_samples=num_samples, size=size, seed=seed, modalities=list(modalities))
        self.min_objects = check_int("min_objects", min_objects, 1)
        self.max_objects = check_int("max_objects", max_objects, self.min_objects)
        if self.max_objects > _MAX_OBJECTS:
            raise ValueError(f"`max_objects` must be <= {_MAX_OBJECTS}, got {max_objects!r}")
        if max_disparity is None:
            max_disparity = 192.0 * self.width / 512.0
        self.max_disparity = _range("max_disparity", max_disparity, 1.0, 0.5 * self.width)
        if not isinstance(photometric, bool):
            raise ValueError(f"`photometric` must be a bool, got {photometric!r}")
        self.photometric = photometric
        self.vertical_shift = _range("vertical_shift", vertical_shift, 0.0, 0.25 * self.height)

    # ------------------------------------------------------------------ scene sampling
    def _plane(self, tilt: float, azim: float, ox: float, oy: float, d0: float, f: float):
        """Disparity coefficients ``(a, b, c)`` of a plane through ``(ox, oy)`` with disparity ``d0``.

        The normal ``(sin t cos a, sin t sin a, -cos t)`` faces the camera; ``1/Z`` is affine in the pixel
        coordinates for a plane, so ``d = a x + b y + c`` (see ``SyntheticScenes``).
        """
        n = (math.sin(tilt) * math.cos(azim), math.sin(tilt) * math.sin(azim), -math.cos(tilt))
        cx, cy = self.cx, self.cy
        s = d0 / (n[0] * (ox - cx) / f + n[1] * (oy - cy) / f + n[2])
        return (s * n[0] / f, s * n[1] / f, s * (n[2] - n[0] * cx / f - n[1] * cy / f))

    def _fits(self, coef, box: tuple[float, float, float, float], lo: float) -> bool:
        """Plane disparity within ``[lo, max_disparity]`` over ``box`` and invertible in the right view."""
        a, b, c = coef
        x0, x1, y0, y1 = box
        corners = [a * x + b * y + c for x in (x0, x1) for y in (y0, y1)]
        return abs(a) <= 0.5 and min(corners) >= lo and max(corners) <= self.max_disparity

    def scene(self, index: int) -> Scene:
        """Sample scene ``index`` (a fixed number of draws per object, so layers are stable)."""
        rng = np.random.default_rng([self.seed, index])
        h, w, m = self.height, self.width, self.max_disparity
        n_obj = int(rng.integers(self.min_objects, self.max_objects + 1))
        cam = rng.random(3).tolist()
        bg = rng.random((2, 5)).tolist()
        obj = rng.random((n_obj, 11)).tolist()
        tex = rng.random((n_obj + 2, 10)).tolist()
        col = rng.random((n_obj + 2, 4)).tolist()
        focal = w * (0.6 + 1.0 * cam[0])
        z_far = 3.0 + 5.0 * cam[1]
        fb = m * (0.25 + 0.75 * cam[2])  # disparity at Z = 1
        frame = (0.0, w - 1.0, 0.0, h - 1.0)
        layers = []
        for k, r in enumerate(bg):
            d0 = fb / (z_far * (1.0 + 0.5 * r[0]))
            coef = self._plane(math.radians(50 * r[1]), 2 * math.pi * r[2], w * r[3], h * r[4], d0, focal)
            if not self._fits(coef, frame, 0.3 * d0):
                coef = (0.0, 0.0, d0)
            layers.append(Layer(coef=coef, semantic=k, instance=0, tex=self._tex(tex[k])))
        short = min(h, w)
        for j, r in enumerate(obj):
            family = min(int(r[0] * len(FAMILIES)), len(FAMILIES) - 1)
            radius = short * 0.04 * (0.35 / 0.04) ** r[1]  # log-uniform, independent of depth
            ox, oy = w * r[2], h * r[3]
            d0 = fb / (1.0 + (z_far - 1.0) * r[4])
            coef = (0.0, 0.0, d0)
            if r[5] < 0.6:
                tilted = self._plane(math.radians(60 * r[6]), 2 * math.pi * r[7], ox, oy, d0, focal)
                if self._fits(tilted, (ox - radius, ox + radius, oy - radius, oy + radius), 0.5 * d0):
                    coef = tilted
            theta, psi = 2 * math.pi * r[8], 2 * math.pi * r[9]
            shape_param = {RING: 0.35 + 0.3 * r[10], STAR: 0.3 + 0.3 * r[10]}.get(family, 0.0)
            layers.append(
                Layer(
                    coef=coef,
                    semantic=2 + family,
                    instance=1 + j,
                    family=family,
                    centre=(ox, oy),
                    radius=radius,
                    rot=(math.cos(theta), math.sin(theta)),
                    inv_aspect=1.0 / (0.4 + 0.6 * r[10]),
                    shape_param=shape_param,
                    split=(math.cos(psi), math.sin(psi)),
                    tex=self._tex(tex[2 + j]),
                )
            )
        for layer, c in zip(layers, col):
            layer.colour = tuple(c)
        return Scene(layers=layers, light=(0.0, 0.0, 0.0, 0.0))

    def _tex(self, r: list[float]) -> dict[str, float]:
        """Texture variates in pixel units; nothing here depends on the layer's depth."""
        return {
            "kind": int(np.searchsorted(_KIND_CDF, r[9] * _KIND_CDF[-1], side="right")),
            "noise_scale": 0.25 * 6.0 ** r[0],  # texels per pixel: noise periods ~3-250 px
            "noise_angle": 2 * math.pi * r[1],
            "noise_u0": TEX_N * r[2],
            "noise_v0": TEX_N * r[3],
            "period": 4.0 * 8.0 ** r[4],  # 4-32 px
            "angle": math.pi * r[5],
            "phase": 2 * math.pi * r[6],
            "mix": r[7],
            "ox": self.width * r[2],
            "oy": self.height * r[3],
            "warp": 1.0 + 3.0 * r[8],
        }

    # ------------------------------------------------------------------ appearance
    def _texture(
        self, layer: Layer, x: np.ndarray, y: np.ndarray, d: np.ndarray, target: bool
    ) -> np.ndarray:
        """``SyntheticScenes`` patterns plus 1/f fractal noise and turbulence marble, in ~[0, 1]."""
        t = layer.tex
        if t["kind"] < _FRACTAL:
            return super()._texture(layer, x, y, d, False)
        scale = t["noise_scale"]
        ca, sa = math.cos(t["noise_angle"]), math.sin(t["noise_angle"])
        u = (x * ca - y * sa) * scale + t["noise_u0"]
        v = (x * sa + y * ca) * scale + t["noise_v0"]
        # three octaves with amplitude ~ 1/frequency: a 1/f spectrum over ~5 octaves with the table's band
        out = sample_noise(self._table, u, v)
        out += 0.5 * sample_noise(self._table, 2.03 * u + 17.0, 2.03 * v + 31.0)
        out += 0.25 * sample_noise(self._table, 4.11 * u + 5.0, 4.11 * v + 47.0)
        if t["kind"] == _FRACTAL:
            out *= 0.22
            out += 0.5
            return out
        k = 2 * math.pi / t["period"]
        phase = (x * math.cos(t["angle"]) + y * math.sin(t["angle"])) * k + t["phase"]
        out *= t["warp"]
        out += phase
        pat = np.cos(out)
        pat *= 0.3
        pat += 0.5
        pat += 0.12 * sample_noise(self._table, 3.0 * u + 9.0, 3.0 * v + 3.0)
        return pat

    def _palette(self, scene: Scene, target: bool) -> tuple[np.ndarray, np.ndarray]:
        """Colour tables (3, 2L) indexed by ``2 * layer + (part == 2)``; any hue, value and contrast."""
        uh, us, uv, dh = np.asarray([ly.colour for ly in scene.layers]).T
        hue = np.repeat(uh, 2)
        sat = np.repeat(0.9 * us, 2)
        val = np.repeat(0.35 + 0.65 * uv, 2)
        dh = np.repeat(dh, 2)
        # second part (objects only): another tint and value with the same marginal law, so that being
        # an object, hence nearer than the background, does not make a pixel darker on average
        hue[1::2] += 0.1
        val[1::2] = 0.35 + 0.65 * np.mod(uv + 0.5, 1.0)
        light = hsv_to_rgb(hue, sat, val)
        dark = hsv_to_rgb(hue + 0.3 * (dh - 0.5), sat, val * (0.05 + 0.35 * dh))
        return dark.astype(np.float32), (light - dark).astype(np.float32)

    def _photometric(self, img: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """Exposure, white balance, gamma and sensor noise for one view (in place)."""
        g = rng.random(6)
        gain = 0.75 * (4.0 / 3.0 / 0.75) ** g[0] * (0.95 + 0.1 * g[1:4])  # exposure x white balance
        img *= gain.astype(np.float32)[:, None, None]
        np.clip(img, 0.0, 1.0, out=img)
        np.power(img, np.float32(0.75 * (4.0 / 3.0 / 0.75) ** g[4]), out=img)
        img += rng.standard_normal(img.shape, dtype=np.float32) * np.float32(0.02 * g[5])
        return img

    def _shift_rows(self, img: np.ndarray, dy: float) -> np.ndarray:
        """Sample the view at rows ``y + dy`` (linear, edge rows repeated)."""
        ys = np.clip(np.arange(self.height, dtype=np.float32) + np.float32(dy), 0, self.height - 1)
        y0 = np.minimum(np.floor(ys).astype(np.int64), self.height - 2)
        wgt = (ys - y0).astype(np.float32)[None, :, None]
        return img[:, y0] * (1 - wgt) + img[:, y0 + 1] * wgt

    def render(self, index: int) -> dict[str, np.ndarray]:
        """Numpy arrays of the requested modalities for sample ``index``."""
        prime_malloc()
        mods = self.modalities
        scene = self.scene(index)
        h, w = self.height, self.width
        out: dict[str, np.ndarray] = {}
        disp, owner, part = self._zbuffer(scene, right=False)
        palette = self._palette(scene, False) if ("image" in mods or "right" in mods) else None
        if "image" in mods:
            img = self._shade_view(scene, disp, owner, part, False, False, palette)
            if self.photometric:
                img = self._photometric(img, np.random.default_rng([self.seed, index, 2, 0]))
            out["image"] = np.clip(img, 0.0, 1.0, out=img)
        if "right" in mods:
            d_r, o_r, p_r = self._zbuffer(scene, right=True)
            img = self._shade_view(scene, d_r, o_r, p_r, True, False, palette)
            if self.vertical_shift > 0:
                u = np.random.default_rng([self.seed, index, 3]).random()
                img = self._shift_rows(img, self.vertical_shift * (2.0 * u - 1.0))
            if self.photometric:
                img = self._photometric(img, np.random.default_rng([self.seed, index, 2, 1]))
            out["right"] = np.clip(img, 0.0, 1.0, out=img)
        if "disparity" in mods:
            out["disparity"] = disp.reshape(1, h, w)
        if "occlusion" in mods:
            xq = self._xs - disp
            d_right, _, _ = self._zbuffer(scene, right=True, xq=xq, with_labels=False)
            out["occlusion"] = ((d_right > disp + RIGHT_OCCLUSION_TOL) | (xq < -0.5)).reshape(1, h, w)
        if "instance" in mods:
            out["instance"] = np.take(np.array([ly.instance for ly in scene.layers], np.int64), owner)
        return out
