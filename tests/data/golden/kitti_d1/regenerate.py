"""Regenerate ``kitti_d1.pt``: KITTI 2015 D1 (bg / fg / all) by the stereo devkit's definition.

    python tests/data/golden/kitti_d1/regenerate.py --official-root <KITTI stereo/scene-flow devkit checkout>

The devkit is C++ (``cpp/evaluate_scene_flow.cpp::disparityErrorsOutlier`` with ``cpp/io_disp.h``); it needs png++
to build, so this script evaluates its rule with numpy in the devkit's float32 arithmetic instead, reading the
thresholds from the checked-out source: a pixel with valid GT (PNG value > 0, d = v / 256) is an outlier iff
``fabs(d_gt - d_est) > ABS_THRESH && fabs(d_gt - d_est) / fabs(d_gt) > REL_THRESH`` (float32 operands, compared
as double); bg / fg by the object map (0 = background); errors and pixels are summed over all images (the
benchmark's pooled D1). Inputs are 1/256-quantised like the PNGs and include near-threshold pixels.
"""

import re
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import _official  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402

args = _official.parse_args("KITTI stereo devkit (github.com/ccj5351/kitti-devkit mirror)", __doc__)
args.repo = "ccj5351/kitti-devkit"
src = (args.official_root / "devkit_scene_flow_kt15" / "cpp" / "evaluate_scene_flow.cpp").read_text()
ABS = float(re.search(r"#define ABS_THRESH ([0-9.]+)", src).group(1))
REL = float(re.search(r"#define REL_THRESH ([0-9.]+)", src).group(1))
assert "fabs(d_gt-d_est)>ABS_THRESH && fabs(d_gt-d_est)/fabs(d_gt)>REL_THRESH" in src

rng = np.random.default_rng(0)
B, H, W = 2, 24, 40
gt_png = rng.integers(1, 120 * 256, size=(B, H, W)).astype(np.uint16)
gt_png[rng.random((B, H, W)) < 0.3] = 0  # invalid
d_gt = gt_png.astype(np.float32) / np.float32(256.0)
noise = rng.normal(0, 4, size=(B, H, W))
# near-threshold pixels: |err| = 3 px +- 1/256 and |err| = 5 % of d +- 1/256
k = rng.random((B, H, W))
noise = np.where(k < 0.15, np.sign(noise) * (3 + rng.choice([-1, 0, 1], size=(B, H, W)) / 256), noise)
rel = np.where(d_gt > 80, d_gt * 0.05, 0) + rng.choice([-1, 1], size=(B, H, W)) / 256
noise = np.where((k >= 0.15) & (k < 0.3) & (d_gt > 80), np.sign(noise) * rel, noise)
est_png = np.clip(np.round((d_gt + noise) * 256), 1, 65535).astype(np.uint16)
d_est = est_png.astype(np.float32) / np.float32(256.0)
obj = (rng.random((B, H, W)) < 0.25).astype(np.uint8)  # object map: 1 = foreground

valid = gt_png > 0
err = np.abs(d_gt - d_est).astype(np.float32)
ratio = (err / np.abs(np.where(valid, d_gt, 1))).astype(np.float32)
outlier = valid & (err.astype(np.float64) > ABS) & (ratio.astype(np.float64) > REL)
res = {}
for name, region in (("all", valid), ("bg", valid & (obj == 0)), ("fg", valid & (obj == 1))):
    res[name] = 100.0 * outlier[region].sum() / region.sum()
gt = torch.from_numpy(np.where(valid, d_gt, np.inf).astype(np.float32))[:, None]
_official.save(Path(__file__).with_name("kitti_d1.pt"), args, {
    "abs_thresh": ABS, "rel_thresh": REL, "gt": gt, "pred": torch.from_numpy(d_est)[:, None],
    "object_map": torch.from_numpy(obj)[:, None], "d1": {k: float(v) for k, v in res.items()},
    "n_outliers": int(outlier.sum()),
})
print(res)
