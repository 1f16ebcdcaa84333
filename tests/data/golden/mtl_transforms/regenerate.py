"""Regenerate ``mtl_transforms.pt``: the MTI-Net-family training augmentation from the official MTLoRA code.

    python tests/data/golden/mtl_transforms/regenerate.py --official-root <scale-lab/MTLoRA checkout>

Runs ``data/custom_transforms.py`` (``RandomHorizontalFlip`` → ``ScaleNRotate(rots=(-20, 20), scales=(.75, 1.25))``
→ ``FixedResize`` → ``AddIgnoreRegions``, with the PASCAL ``FLAGVALS`` of ``data/mtl_ds.py``: cubic for image and
normals, nearest for the labels) on a seeded 24x32 sample (image 0-255, semseg with 255s, parts, saliency,
normals with invalid zeros, edges) for three fixed draws (flip, angle, scale): numpy's ``random.random`` is
replaced by the values that give those draws. Also the single-pixel normal example (0.6, 0, 0.8) rotated 20°.
TADFormer and SCA_MTL carry the same file.
"""

import sys
import types
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import _official  # noqa: E402
import cv2  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402

args = _official.parse_args("scale-lab/MTLoRA", __doc__)
pkg = types.ModuleType("data")  # import data/custom_transforms.py without data/__init__.py (training loaders)
pkg.__path__ = [str(args.official_root / "data")]
sys.modules["data"] = pkg
import data.custom_transforms as tr  # noqa: E402

FLAGVALS = {"image": cv2.INTER_CUBIC, "semseg": cv2.INTER_NEAREST, "human_parts": cv2.INTER_NEAREST,
            "sal": cv2.INTER_NEAREST, "normals": cv2.INTER_CUBIC, "edge": cv2.INTER_NEAREST}
H, W, SIZE = 24, 32, (20, 28)

g = np.random.default_rng(0)
n = g.normal(size=(H, W, 3)).astype(np.float32)
n /= np.linalg.norm(n, axis=2, keepdims=True)
n[:3] = 0  # invalid rows
semseg = g.integers(0, 21, (H, W)).astype(np.float32)
semseg[-2:, :5] = 255
sample = {"image": (g.random((H, W, 3)) * 255).astype(np.float32), "semseg": semseg,
          "human_parts": g.integers(0, 7, (H, W)).astype(np.float32),
          "sal": (g.random((H, W)) > 0.5).astype(np.float32), "normals": n,
          "edge": (g.random((H, W)) > 0.8).astype(np.float32)}


def run(flip, angle, scale):
    draws = iter([0.0 if flip else 1.0, (angle + 20) / 40, (scale - 0.75) / 0.5])
    tr.random.random = lambda: next(draws)
    s = {k: v.copy() for k, v in sample.items()}
    for t in (tr.RandomHorizontalFlip(), tr.ScaleNRotate(rots=(-20, 20), scales=(.75, 1.25), flagvals=FLAGVALS),
              tr.FixedResize(resolutions={k: SIZE for k in FLAGVALS}, flagvals=FLAGVALS), tr.AddIgnoreRegions()):
        s = t(s)
    return {k: torch.from_numpy(np.ascontiguousarray(v, dtype=np.float32)) for k, v in s.items()}


cases = [{"flip": f, "angle": a, "scale": sc, "out": run(f, a, sc)}
         for f, a, sc in ((False, 20.0, 1.0), (True, -13.7, 0.8), (False, 7.3, 1.2))]
one = {"normals": np.tile(np.array([0.6, 0.0, 0.8], np.float32), (8, 8, 1)), "image": np.ones((8, 8, 3), np.float32)}
tr.random.random = iter([1.0, 0.5]).__next__  # rot 20°, scale 1.0
rotated = tr.ScaleNRotate(rots=(-20, 20), scales=(.75, 1.25), flagvals=FLAGVALS)(one)["normals"][4, 4]
_official.save(Path(__file__).with_name("mtl_transforms.pt"), args,
               {"input": {k: torch.from_numpy(v) for k, v in sample.items()}, "size": SIZE, "cases": cases,
                "normal_example": {"angle": 20.0, "in": torch.tensor([0.6, 0.0, 0.8]), "out": torch.from_numpy(rotated)}})
