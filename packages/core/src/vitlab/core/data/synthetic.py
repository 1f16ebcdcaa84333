"""Procedural layered 3-D scenes: a download-free dataset for every dense-vision task in vitlab.

Scene model
-----------
A pinhole stereo rig (focal ``f = W`` pixels, principal point at the image centre, baseline ``B``)
looks at a stack of planar *layers*: a slanted ground plane, a back wall, and ``min_objects`` to
``max_objects`` objects (ellipse, rectangle, triangle, ring, star; fronto-parallel or tilted up to 45
degrees) floating in front of the wall. Every layer is defined in LEFT-image coordinates by a shape
mask, a procedural texture and an inverse depth.

For any plane ``n . P = k`` seen through a pinhole, ``1/Z = n . ray(x, y) / k`` is *affine* in the pixel
coordinates, hence so is the disparity ``d = f B / Z = a x + b y + c``. The right camera sees the left
point ``(x_l, y)`` at ``x_r = x_l - d(x_l, y)``, which is again affine, so it inverts in closed form:
``x_l = (x_r + b y + c) / (1 - a)``.

Why the stereo pair is exact
----------------------------
A view is rendered by mapping every view pixel to each layer's left-image coordinate (identity for the
left view, the closed-form inverse above for the right one), evaluating mask, disparity and texture
*there*, and z-buffering by disparity (larger = nearer). Both views therefore sample one continuous
surface texture at the true corresponding points: a left pixel visible in both views has exactly the
same colour as the right image at ``x - d`` (up to interpolation of the right image), occlusions and
disocclusions follow from the z-buffer, and the right view is never a warp of the left one. Textures are
band-limited multi-scale noise (periods >= ~4 px) plus smooth stripes/checkers/rings, so matching is
well-posed everywhere, background included. Lambertian shading (target domain) depends only on the
plane normal, so it is also identical in both views; only sensor noise is independent per view.

Per-pixel work is vectorised numpy in float32; textures are evaluated once per visible pixel after the
z-buffer, which keeps a 128x128 sample with every modality at a few milliseconds on one core.

Encodings
---------
* ``semantic``: 0 ground, 1 wall, ``2 + family`` for objects (see :data:`CLASS_NAMES`).
* ``parts``: 0 background (ground/wall); objects are cut in two by a random line through their centre,
  1 = the half on the positive side of the line, 2 = the other half (:data:`PART_NAMES`). The halves get
  different colours, so parts are visible.
* ``instance``: 0 background, ``1 + j`` for the j-th object of the scene (fully hidden ids are absent).
* ``disparity``/``depth``: left view, pixels/metres, ``disparity == focal * baseline / depth``; every
  pixel is valid (the library's +inf invalid marker never appears).
* ``normals``: unit normals in camera coordinates (x right, y down, z forward) facing the camera (n_z < 0).
* ``occlusion``: True where a left pixel is hidden in the right view or falls outside it.
* ``label``: family index 0..4 (``semantic - 2``) of the object with the largest visible area.
* ``domain``: 0 source, 1 target.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch
from torch.utils.data import Dataset

from vitlab.core.data.render import (
    BASELINE,
    BOARDS,
    CHECKER,
    CLASS_NAMES,
    DOMAINS,
    ELLIPSE,
    FAMILIES,
    MODALITIES,
    NUM_CLASSES,
    NUM_PARTS,
    PART_NAMES,
    RECTANGLE,
    RIGHT_OCCLUSION_TOL,
    RING,
    STAR,
    STRIPES,
    TEX_N,
    TRI_NORMALS,
    TRIANGLE,
    Layer,
    Scene,
    check_int,
    hsv_to_rgb,
    noise_table,
    parse_domain,
    parse_modalities,
    parse_size,
    plane_normal,
    prime_malloc,
    right_coef,
    sample_noise,
)

__all__ = [
    "BASELINE",
    "CLASS_NAMES",
    "DOMAINS",
    "FAMILIES",
    "MODALITIES",
    "NUM_CLASSES",
    "NUM_PARTS",
    "PART_NAMES",
    "SyntheticScenes",
]


class SyntheticScenes(Dataset):
    """Stereo pairs of random layered planar scenes with exact dense labels for every vitlab task.

    Sample ``i`` is a pure function of ``(seed, i, domain)`` (``np.random.default_rng([seed, i])``), so it
    is identical across workers, processes and runs; the geometry does not depend on the domain, only
    the appearance does, which makes ``source``/``target`` a clean domain-adaptation pair.

    Args:
        num_samples: dataset length.
        size: output ``(H, W)`` or one int for square images.
        seed: scene stream; datasets with different seeds share no scenes.
        modalities: keys to return (see :data:`MODALITIES`); ``None`` returns all. ``index`` is always added.
        domain: ``"source"`` (flat shading, warm palette), ``"target"`` (shifted palette, other texture
            statistics, Lambertian shading, blur and sensor noise) or ``"mixed"`` (even indices source,
            odd indices target).
        min_objects: fewest objects per scene (>= 1).
        max_objects: most objects per scene (>= min_objects, <= 12).
        max_disparity: largest disparity in pixels (nearest surface); ``None`` means ``0.15 * W``.

    Returned keys (torch tensors): ``image``/``right`` float32 (3,H,W) in [0, 1]; ``disparity`` and
    ``depth`` float32 (1,H,W); ``semantic``/``parts``/``instance`` int64 (H,W); ``saliency``/``edges``
    float32 (1,H,W) in {0, 1}; ``normals`` float32 (3,H,W); ``occlusion`` bool (1,H,W), True where a left
    pixel is hidden in (or outside) the right view; ``label``/``domain``/``index`` int64 scalars.
    ``label`` is the family (0..4, i.e. ``semantic - 2``) of the object with the largest visible area.
    """

    def __init__(
        self,
        num_samples: int = 1000,
        size: int | tuple[int, int] = 128,
        seed: int = 0,
        modalities: Sequence[str] | None = None,
        domain: str = "source",
        min_objects: int = 2,
        max_objects: int = 5,
        max_disparity: float | None = None,
    ) -> None:
        self.num_samples = check_int("num_samples", num_samples, 1)
        self.height, self.width = parse_size(size)
        if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
            raise ValueError(f"`seed` must be a non-negative integer, got {seed!r}")
        self.seed = int(seed)
        self.modalities = parse_modalities(modalities)
        self.domain = parse_domain(domain)
        self.min_objects = check_int("min_objects", min_objects, 1)
        self.max_objects = check_int("max_objects", max_objects, self.min_objects)
        if self.max_objects > 12:
            raise ValueError(f"`max_objects` must be <= 12, got {max_objects!r}")
        if max_disparity is None:
            max_disparity = 0.15 * self.width
        if not isinstance(max_disparity, (int, float)) or not 1.0 <= max_disparity <= 0.5 * self.width:
            raise ValueError(
                f"`max_disparity` must be a number of pixels in [1, W/2 = {0.5 * self.width}] or None, "
                f"got {max_disparity!r}"
            )
        self.max_disparity = float(max_disparity)
        self.focal = float(self.width)
        self.baseline = BASELINE
        self.cx = (self.width - 1) / 2.0
        self.cy = (self.height - 1) / 2.0
        h, w = self.height, self.width
        self._xs = np.arange(w, dtype=np.float32)[None, :]
        self._ys = np.arange(h, dtype=np.float32)[:, None]
        self._xflat = np.tile(np.arange(w, dtype=np.float32), h)
        self._yflat = np.repeat(np.arange(h, dtype=np.float32), w)
        self._table = noise_table()

    # ------------------------------------------------------------------ metadata
    def __len__(self) -> int:
        return self.num_samples

    @property
    def num_classes(self) -> int:
        return NUM_CLASSES

    @property
    def num_parts(self) -> int:
        return NUM_PARTS

    @property
    def class_names(self) -> tuple[str, ...]:
        return CLASS_NAMES

    def domain_of(self, index: int) -> int:
        """0 (source) or 1 (target) for sample ``index``."""
        if self.domain == "mixed":
            return index % 2
        return int(self.domain == "target")

    # ------------------------------------------------------------------ scene sampling
    def scene(self, index: int) -> Scene:
        """Sample the domain-independent description of scene ``index`` (fixed number of draws)."""
        rng = np.random.default_rng([self.seed, index])
        h, w, m = self.height, self.width, self.max_disparity
        cx, cy = self.cx, self.cy
        n_obj = int(rng.integers(self.min_objects, self.max_objects + 1))
        bg = rng.random(8).tolist()
        obj = rng.random((n_obj, 14)).tolist()
        tex = rng.random((n_obj + 2, 9)).tolist()
        col = rng.random((n_obj + 2, 4)).tolist()
        light = rng.random(4).tolist()

        # Background: the wall/ground intersection is simply where their disparities cross.
        d_wall = m * (0.15 + 0.1 * bg[0])
        d_bottom = m * (0.5 + 0.2 * bg[1])
        y_line = h * (0.3 + 0.25 * bg[2])
        b_g = (d_bottom - d_wall) / (h - 1 - y_line)
        a_g = b_g * 0.1 * (bg[3] - 0.5)  # slight camera roll
        ground = (a_g, b_g, d_wall - b_g * y_line - a_g * cx)
        a_w, b_w = 0.0, 0.0
        if bg[4] < 0.5:  # slanted wall
            a_w = d_wall * 0.4 * (bg[5] - 0.5) / w
            b_w = d_wall * 0.3 * (bg[6] - 0.5) / h
        wall = (a_w, b_w, d_wall - a_w * cx - b_w * cy)
        layers = [
            Layer(
                coef=ground, semantic=0, instance=0, tex=self._texture_variates(tex[0], BOARDS, d_bottom)
            ),
            Layer(coef=wall, semantic=1, instance=0, tex=self._texture_variates(tex[1], -1, d_wall)),
        ]
        layers[0].tex["d_ref"] = d_bottom
        layers[0].tex["cx"] = cx
        for j, r in enumerate(obj):
            family = int(r[0] * len(FAMILIES))
            radius = min(h, w) * (0.08 + 0.14 * r[1])
            ox, oy = w * (0.1 + 0.8 * r[2]), h * (0.15 + 0.75 * r[3])
            theta, psi = 2 * math.pi * r[4], 2 * math.pi * r[5]
            d_lo = max(d_wall, ground[0] * ox + ground[1] * (oy + 0.5 * radius) + ground[2]) + 0.05 * m
            d_hi = 0.95 * m
            d0 = d_lo + (d_hi - d_lo) * r[6] if d_hi > d_lo else d_hi
            coef = (0.0, 0.0, d0)
            if r[7] < 0.5:  # slanted plane: tilt up to 45 degrees away from fronto-parallel
                tilt, azim = math.radians(10 + 35 * r[8]), 2 * math.pi * r[9]
                coef = self._coef_from_normal(
                    (math.sin(tilt) * math.cos(azim), math.sin(tilt) * math.sin(azim), -math.cos(tilt)),
                    ox,
                    oy,
                    d0,
                )
                corners = [
                    coef[0] * (ox + sx * radius) + coef[1] * (oy + sy * radius) + coef[2]
                    for sx in (-1, 1)
                    for sy in (-1, 1)
                ]
                if max(corners) > m or min(corners) < 0.5 * d_wall or abs(coef[0]) > 0.5:
                    coef = (0.0, 0.0, d0)
            shape_param = {RING: 0.45 + 0.2 * r[10], STAR: 0.35 + 0.2 * r[10]}.get(family, 0.0)
            layer = Layer(
                coef=coef,
                semantic=2 + family,
                instance=1 + j,
                family=family,
                centre=(ox, oy),
                radius=radius,
                rot=(math.cos(theta), math.sin(theta)),
                inv_aspect=1.0 / (0.55 + 0.45 * r[11]),
                shape_param=shape_param,
                split=(math.cos(psi), math.sin(psi)),
                tex=self._texture_variates(tex[2 + j], int(r[12] * 3), d0),
            )
            layer.tex["ox"], layer.tex["oy"] = ox, oy
            layers.append(layer)
        for layer, c in zip(layers, col):
            layer.colour = tuple(c)
        return Scene(layers=layers, light=tuple(light))

    def _coef_from_normal(self, n: tuple[float, float, float], ox: float, oy: float, d0: float):
        """Disparity coefficients of the plane with normal ``n`` whose disparity at (ox, oy) is ``d0``."""
        f, cx, cy = self.focal, self.cx, self.cy
        nr0 = n[0] * (ox - cx) / f + n[1] * (oy - cy) / f + n[2]
        s = d0 / nr0
        return (s * n[0] / f, s * n[1] / f, s * (n[2] - n[0] * cx / f - n[1] * cy / f))

    def _texture_variates(self, r: list[float], kind: int, d_ref: float) -> dict[str, float]:
        """Texture parameters in pixel units; nearer layers (larger disparity) get coarser texture."""
        depth_scale = min(max(d_ref / (0.5 * self.max_disparity), 0.6), 1.8)
        if kind < 0:
            kind = int(r[8] * 3)
        return {
            "kind": kind,
            "noise_scale": (0.55 + 0.5 * r[0]) / depth_scale,
            "noise_angle": 2 * math.pi * r[1],
            "noise_u0": TEX_N * r[2],
            "noise_v0": TEX_N * r[3],
            "period": (5.0 + 7.0 * r[4]) * depth_scale,
            "angle": math.pi * r[5],
            "phase": 2 * math.pi * r[6],
            "mix": r[7],
            "ox": self.width * r[2],  # centre of concentric patterns; objects use their own centre
            "oy": self.height * r[3],
        }

    # ------------------------------------------------------------------ rendering
    def _zbuffer(self, scene: Scene, right: bool, xq: np.ndarray | None = None, with_labels: bool = True):
        """Visible disparity (and owning layer / part) at every view pixel, or at query x positions.

        ``xq`` (H, W) are arbitrary view x-coordinates per row (used for the occlusion test); without it
        the integer pixel grid is used and objects only touch their bounding box.
        """
        h, w = self.height, self.width
        ys = self._ys
        xs = self._xs if xq is None else xq
        coefs = [right_coef(ly.coef) if right else ly.coef for ly in scene.layers]
        a, b, c = coefs[0]
        disp = a * xs + (b * ys + c)
        a, b, c = coefs[1]
        d_wall = a * xs + (b * ys + c)
        owner = part = None
        if with_labels:
            owner = (d_wall >= disp).astype(np.int8)
        np.maximum(disp, d_wall, out=disp)
        if with_labels:
            part = np.zeros((h, w), np.int8)
        for k in range(2, len(scene.layers)):
            box = self._bbox(scene.layers[k], right)
            if box is None:
                continue
            r0, r1, c0, c1 = box
            if xq is None:
                xsl, sl = xs[:, c0:c1], (slice(r0, r1), slice(c0, c1))
            else:
                xsl, sl = xq[r0:r1], (slice(r0, r1), slice(None))
            res = self._object_mask(scene.layers[k], coefs[k], xsl, ys[r0:r1], right, disp[sl])
            if res is None:
                continue
            m, dv, side = res
            np.copyto(disp[sl], dv, where=m)
            if with_labels:
                np.copyto(owner[sl], np.int8(k), where=m)
                np.copyto(part[sl], (side + 1).astype(np.int8), where=m)
        return disp, owner, part

    def _bbox(self, layer: Layer, right: bool):
        """Integer pixel box (rows, cols) of the view that can contain the object, or None if off-screen."""
        ox, oy = layer.centre
        rad = layer.radius
        y0, y1 = oy - rad, oy + rad
        x0, x1 = ox - rad, ox + rad
        if right:  # map the left box corners into the right view: x_r = x_l - d(x_l, y)
            a, b, c = layer.coef
            xr = [x - (a * x + b * y + c) for x in (x0, x1) for y in (y0, y1)]
            x0, x1 = min(xr), max(xr)
        r0, r1 = max(0, math.ceil(y0)), min(self.height, math.floor(y1) + 1)
        c0, c1 = max(0, math.ceil(x0)), min(self.width, math.floor(x1) + 1)
        if r0 >= r1 or c0 >= c1:
            return None
        return r0, r1, c0, c1

    @staticmethod
    def _object_mask(layer: Layer, coef_v, xv: np.ndarray, yv: np.ndarray, right: bool, d_cur: np.ndarray):
        """Shape mask (nearer than ``d_cur``), disparity and part side of one object over a view patch."""
        a, b, c = coef_v
        dv = a * xv + (b * yv + c)
        xl = xv + dv if right else xv
        ox, oy = layer.centre
        cs, sn = layer.rot
        inv_r = 1.0 / layer.radius
        dx = (xl - ox) * inv_r
        dy = (yv - oy) * inv_r
        u = cs * dx + sn * dy
        v = (cs * dy - sn * dx) * layer.inv_aspect
        fam = layer.family
        if fam == RECTANGLE:
            half = math.sqrt(0.5)
            m = (np.abs(u) <= half) & (np.abs(v) <= half)
        elif fam == TRIANGLE:
            m = None
            for nx, ny in TRI_NORMALS:
                e = (nx * u + ny * v) <= 0.5
                m = e if m is None else m & e
        else:
            rho2 = u * u + v * v
            if fam == ELLIPSE:
                m = rho2 <= 1.0
            elif fam == RING:
                m = (rho2 <= 1.0) & (rho2 >= layer.shape_param**2)
            else:  # star: radius r(phi) = r_in + (1 - r_in) g^2, g = (1 + cos 5 phi) / 2 via Chebyshev T5
                rho = np.sqrt(rho2)
                cphi = u / (rho + 1e-6)
                c2 = cphi * cphi
                g = 0.5 + 0.5 * cphi * (5.0 + c2 * (16.0 * c2 - 20.0))
                r_in = layer.shape_param
                m = rho <= r_in + (1.0 - r_in) * g * g
        m &= dv > d_cur
        if not m.any():
            return None
        sx, sy = layer.split
        side = (sx * u + sy * v) < 0
        return m, dv, side

    def _texture(
        self, layer: Layer, x: np.ndarray, y: np.ndarray, d: np.ndarray, target: bool
    ) -> np.ndarray:
        """Scalar texture in ~[0, 1] at LEFT-image coordinates of a layer (1-D arrays)."""
        t = layer.tex
        scale, period = t["noise_scale"], t["period"]
        w_noise, w_pat = 0.16 + 0.08 * t["mix"], 0.3 - 0.12 * t["mix"]
        if target:  # other texture statistics: coarser blobs, broader patterns, more noise than pattern
            scale, period = scale * 0.6, period * 1.5
            w_noise, w_pat = w_noise * 1.4, w_pat * 0.6
        ca, sa = math.cos(t["noise_angle"]) * scale, math.sin(t["noise_angle"]) * scale
        u = x * ca - y * sa + t["noise_u0"]
        v = x * sa + y * ca + t["noise_v0"]
        out = sample_noise(self._table, u, v)
        out *= w_noise
        k = 2 * math.pi / period
        kx, ky = k * math.cos(t["angle"]), k * math.sin(t["angle"])
        kind = t["kind"]
        if kind == BOARDS:  # planks converging to the vanishing point: 4x period at d_ref, shrinking with d
            pat = np.cos((x - t["cx"]) * (k * 0.25 * t["d_ref"]) / d + t["phase"])
        elif kind == STRIPES:
            pat = np.cos(x * kx + y * ky + t["phase"])
        elif kind == CHECKER:
            pat = np.cos(x * kx + y * ky + t["phase"]) * np.cos(y * kx - x * ky)
        else:
            pat = np.cos(np.sqrt((x - t["ox"]) ** 2 + (y - t["oy"]) ** 2) * k + t["phase"])
        out += w_pat * pat
        out += 0.5
        return out

    def _palette(self, scene: Scene, target: bool) -> tuple[np.ndarray, np.ndarray]:
        """Colour tables (3, 2L) indexed by ``2 * layer + (part == 2)``: dark end and (light - dark)."""
        col = np.asarray([ly.colour for ly in scene.layers])
        uh, us, uv, dh = col.T
        if target:  # the other half of the hue circle, duller and darker
            hue, sat, val = 0.5 + 0.45 * uh, 0.2 + 0.45 * us, 0.45 + 0.45 * uv
        else:
            hue, sat, val = 0.45 * uh, 0.35 + 0.5 * us, 0.55 + 0.4 * uv
        sat[:2] *= 0.6  # greyer background so objects stand out in either palette
        hue = np.repeat(hue, 2)
        sat = np.repeat(sat, 2)
        val = np.repeat(val, 2)
        dh = np.repeat(dh, 2)
        hue[1::2] += 0.07  # second part: visibly different tint and value
        val[1::2] *= 0.8
        light = hsv_to_rgb(hue, sat, val)
        dark = hsv_to_rgb(hue + 0.16 * (dh - 0.5), np.minimum(1.0, 1.2 * sat), 0.3 * val)
        if target:
            shade = self._shading(scene)
            light = light * np.repeat(shade, 2)
            dark = dark * np.repeat(shade, 2)
        return dark.astype(np.float32), (light - dark).astype(np.float32)

    def _normals_table(self, scene: Scene) -> np.ndarray:
        return np.stack([plane_normal(ly.coef, self.focal, self.cx, self.cy) for ly in scene.layers], 1)

    def _shading(self, scene: Scene) -> np.ndarray:
        """Lambertian factor per layer for a directional light from above-front (target domain only)."""
        lx, ly, amb, _ = scene.light
        light = np.array([1.2 * (lx - 0.5), -0.3 - 0.6 * ly, -1.0])
        light /= np.linalg.norm(light)
        ambient = 0.35 + 0.15 * amb
        lambert = np.clip(light @ self._normals_table(scene), 0.0, None)
        return (ambient + (1.0 - ambient) * lambert) / (ambient + (1.0 - ambient) * 0.8)

    def _shade_view(self, scene, disp, owner, part, right, target, palette) -> np.ndarray:
        """Texture every visible pixel once and colour it: (3, H, W).

        Pixels are grouped by paint id ``2 * layer + (part == 2)``: a layer's texture is evaluated on one
        contiguous run, each paint's colour is then a constant affine map of it, and a single scatter puts
        the runs back in image order (cheaper than per-pixel palette gathers).
        """
        h, w = self.height, self.width
        paint = owner * np.int8(2) + (part == 2).astype(np.int8)
        flat = paint.ravel()
        order = np.argsort(flat, kind="stable")  # radix sort for int8
        # run boundaries of each paint id (searchsorted on the sorted ids is ~30x cheaper than bincount)
        bounds = np.searchsorted(
            np.take(flat, order), np.arange(2 * len(scene.layers) + 1, dtype=np.int8)
        ).tolist()
        dflat = disp.ravel()
        dark, delta = palette
        runs = np.empty((3, h * w), np.float32)
        for k, layer in enumerate(scene.layers):
            s, e = bounds[2 * k], bounds[2 * k + 2]
            if s == e:
                continue
            idx = order[s:e]
            d = np.take(dflat, idx)
            x = np.take(self._xflat, idx)
            if right:
                x = x + d  # left-image coordinate of the same surface point
            tex = self._texture(layer, x, np.take(self._yflat, idx), d, target)
            np.clip(tex, 0.0, 1.0, out=tex)
            for col, a, b in ((2 * k, s, bounds[2 * k + 1]), (2 * k + 1, bounds[2 * k + 1], e)):
                if a < b:
                    np.multiply(delta[:, col : col + 1], tex[a - s : b - s], out=runs[:, a:b])
                    runs[:, a:b] += dark[:, col : col + 1]
        img = np.empty((3, h * w), np.float32)
        for ch in range(3):  # 1-D scatters: several times faster than one 2-D fancy assignment
            img[ch][order] = runs[ch]
        return img.reshape(3, h, w)

    def _post(self, img: np.ndarray, rng: np.random.Generator, sigma: float) -> np.ndarray:
        """Target-domain sensor: 3x3 binomial blur then uniform noise with std ``sigma``; clipped to [0, 1]."""
        tmp = np.empty_like(img)
        tmp[:, :, 1:-1] = img[:, :, :-2] + img[:, :, 2:] + 2.0 * img[:, :, 1:-1]
        tmp[:, :, 0] = 3.0 * img[:, :, 0] + img[:, :, 1]
        tmp[:, :, -1] = 3.0 * img[:, :, -1] + img[:, :, -2]
        img[:, 1:-1] = tmp[:, :-2] + tmp[:, 2:] + 2.0 * tmp[:, 1:-1]
        img[:, 0] = 3.0 * tmp[:, 0] + tmp[:, 1]
        img[:, -1] = 3.0 * tmp[:, -1] + tmp[:, -2]
        img *= 1.0 / 16.0
        noise = rng.random(img.shape, dtype=np.float32)
        noise -= 0.5
        noise *= sigma * math.sqrt(12.0)
        img += noise
        return img

    def render(self, index: int) -> dict[str, np.ndarray]:
        """Numpy arrays of the requested modalities for sample ``index`` (no torch, no ``index`` key)."""
        prime_malloc()
        mods = self.modalities
        domain = self.domain_of(index)
        target = domain == 1
        scene = self.scene(index)
        h, w = self.height, self.width
        out: dict[str, np.ndarray] = {}
        disp, owner, part = self._zbuffer(scene, right=False)
        want_img = "image" in mods or "right" in mods
        palette = self._palette(scene, target) if want_img else None
        sigma = 0.01 + 0.02 * scene.light[3]  # target sensor noise; one stream per view, independent
        if "image" in mods:
            img = self._shade_view(scene, disp, owner, part, False, target, palette)
            if target:
                img = self._post(img, np.random.default_rng([self.seed, index, 1, 0]), sigma)
            out["image"] = np.clip(img, 0.0, 1.0, out=img)
        if "right" in mods:
            d_r, o_r, p_r = self._zbuffer(scene, right=True)
            img = self._shade_view(scene, d_r, o_r, p_r, True, target, palette)
            if target:
                img = self._post(img, np.random.default_rng([self.seed, index, 1, 1]), sigma)
            out["right"] = np.clip(img, 0.0, 1.0, out=img)
        if "disparity" in mods:
            out["disparity"] = disp.reshape(1, h, w)
        if "depth" in mods:
            out["depth"] = (np.float32(self.focal * self.baseline) / disp).reshape(1, h, w)
        sem_table = np.array([ly.semantic for ly in scene.layers], np.int64)
        if "semantic" in mods:
            out["semantic"] = np.take(sem_table, owner)
        if "parts" in mods:
            out["parts"] = part.astype(np.int64)
        if "instance" in mods:
            out["instance"] = np.take(np.array([ly.instance for ly in scene.layers], np.int64), owner)
        if "saliency" in mods:
            out["saliency"] = (owner >= 2).astype(np.float32).reshape(1, h, w)
        if "edges" in mods:
            out["edges"] = self._edges(owner).astype(np.float32).reshape(1, h, w)
        if "normals" in mods:
            out["normals"] = np.take(self._normals_table(scene).astype(np.float32), owner, axis=1)
        if "occlusion" in mods:
            xq = self._xs - disp  # where each left pixel lands in the right image
            d_right, _, _ = self._zbuffer(scene, right=True, xq=xq, with_labels=False)
            occ = (d_right > disp + RIGHT_OCCLUSION_TOL) | (xq < -0.5)
            out["occlusion"] = occ.reshape(1, h, w)
        if "label" in mods:
            area = np.bincount(owner.ravel(), minlength=len(scene.layers))[2:]
            best = int(np.argmax(area))
            out["label"] = np.array(scene.layers[2 + best].family, np.int64)
        if "domain" in mods:
            out["domain"] = np.array(domain, np.int64)
        return out

    @staticmethod
    def _edges(owner: np.ndarray) -> np.ndarray:
        """Pixels with a 4-neighbour of another layer (different semantic class or instance)."""
        e = np.zeros(owner.shape, bool)
        dx = owner[:, 1:] != owner[:, :-1]
        e[:, 1:] |= dx
        e[:, :-1] |= dx
        dy = owner[1:] != owner[:-1]
        e[1:] |= dy
        e[:-1] |= dy
        return e

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        index = int(index)
        if index < 0:
            index += self.num_samples
        if not 0 <= index < self.num_samples:
            raise IndexError(f"index {index} out of range for {type(self).__name__} of length {self.num_samples}")
        sample = {k: torch.from_numpy(v) for k, v in self.render(index).items()}
        sample["index"] = torch.tensor(index, dtype=torch.int64)
        return sample

