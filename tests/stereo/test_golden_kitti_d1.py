"""KITTI 2015 D1 (bg / fg / all, pooled over images) against the stereo devkit's definition
(``evaluate_scene_flow.cpp::disparityErrorsOutlier``). Numbers produced by
``tests/data/golden/kitti_d1/regenerate.py``."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from vitlab.stereo.metrics import StereoMetrics

FIXTURE = Path(__file__).resolve().parents[1] / "data" / "golden" / "kitti_d1" / "kitti_d1.pt"


@pytest.fixture(scope="module")
def golden():
    rec = torch.load(FIXTURE, weights_only=True)
    assert rec["official_repo"] == "ccj5351/kitti-devkit" and len(rec["official_commit"]) == 40
    return rec["data"]


@pytest.mark.parametrize("region", ["all", "bg", "fg"])
def test_d1_matches_devkit(golden, region):
    g = golden
    m = StereoMetrics(reduction="pixel", d1_abs=g["abs_thresh"], d1_rel=g["rel_thresh"])
    mask = None
    if region != "all":
        mask = g["object_map"] == (1 if region == "fg" else 0)
    for b in range(g["gt"].shape[0]):  # one image per update: pooled over the dataset like the benchmark
        m.update(g["pred"][b:b + 1], g["gt"][b:b + 1], None if mask is None else mask[b:b + 1])
    assert float(m.compute()["d1"]) == pytest.approx(g["d1"][region], abs=1e-4)
