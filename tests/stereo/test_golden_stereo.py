"""Golden values from the official CroCo-Stereo (`naver/croco` ``stereoflow``) and UniTT-Stereo
(`00kim/UniTT-Stereo`) code: Laplacian / L1 losses, tiled prediction and the feature-warp consistency loss in
``official`` mode. Numbers produced by ``tests/data/golden/{croco_stereo,unitt}/regenerate.py``."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from vitlab.stereo.losses import LaplacianLoss, LaplacianLossBounded2, StereoL1Loss, feature_warp_consistency
from vitlab.stereo.tiling import tiled_predict

GOLDEN = Path(__file__).resolve().parents[1] / "data" / "golden"


def _load(name: str, repo: str):
    rec = torch.load(GOLDEN / name / f"{name}.pt", weights_only=True)
    assert rec["official_repo"] == repo and len(rec["official_commit"]) == 40
    return rec["data"]


@pytest.fixture(scope="module")
def croco():
    return _load("croco_stereo", "naver/croco")


@pytest.fixture(scope="module")
def unitt():
    return _load("unitt", "00kim/UniTT-Stereo")


def _rel(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).abs().max() / b.abs().max().clamp_min(1e-12))


def toy_net(left: torch.Tensor, right: torch.Tensor) -> torch.Tensor:
    """The fixed stand-in network of the regeneration script (content- and window-position-dependent)."""
    _, _, h, w = left.shape
    ramp_x = torch.linspace(-1.0, 1.0, w)[None, None, None, :]
    ramp_y = torch.linspace(0.0, 0.5, h)[None, None, :, None]
    disp = 2.0 * (left - right).mean(1, keepdim=True) + 0.5 * left[:, :1] + ramp_x + ramp_y
    conf = 1.5 * right.mean(1, keepdim=True) - ramp_x * ramp_y
    return torch.cat([disp, conf], 1)


@pytest.mark.parametrize("name,loss", [("laplacian_bounded2", LaplacianLossBounded2()),
                                       ("laplacian", LaplacianLoss()), ("l1", StereoL1Loss())])
def test_stereo_losses_match_official(croco, name, loss):
    g = croco["losses"]
    out = loss(torch.cat([g["pred"], g["conf"]], 1), g["gt"])
    assert _rel(out, g[name]) <= 1e-6


@pytest.mark.parametrize("case", [0, 1, 2], ids=["smaller-than-crop", "larger-o0.7", "larger-o0.9"])
def test_tiled_prediction_matches_official(croco, case):
    g = croco["tiling"][case]
    disp, _ = tiled_predict(toy_net, g["left"], g["right"], g["crop"], overlap=g["overlap"],
                            conf_mode="conf_expsigmoid_15_3", upscale_rule="official")
    assert disp.shape == g["disp"].shape
    assert _rel(disp, g["disp"]) <= 1e-5


def test_fixed_upscale_rule_is_a_documented_deviation(croco):
    """The default rule differs from the official one only on images smaller than the crop."""
    g = croco["tiling"][0]
    fixed, _ = tiled_predict(toy_net, g["left"], g["right"], g["crop"], overlap=g["overlap"])
    assert (fixed - g["disp"]).abs().max() > 1e-3
    g = croco["tiling"][1]
    fixed, _ = tiled_predict(toy_net, g["left"], g["right"], g["crop"], overlap=g["overlap"])
    assert _rel(fixed, g["disp"]) <= 1e-5


@pytest.mark.parametrize("case", [0, 1, 2], ids=["B1", "B2", "B3"])
def test_unitt_consistency_official_mode_matches_official(unitt, case):
    g = unitt["consistency"][case]
    out = feature_warp_consistency(g["feat_left"], g["feat_right"], g["gt"], tuple(g["hw"]), g["patch"],
                                   visible=~g["mask"], mode="official")
    assert _rel(out, g["loss"]) <= 1e-5


def test_unitt_consistency_fixed_mode_differs_from_official(unitt):
    g = unitt["consistency"][1]
    out = feature_warp_consistency(g["feat_left"], g["feat_right"], g["gt"], tuple(g["hw"]), g["patch"],
                                   visible=~g["mask"], mode="fixed")
    assert abs(float(out - g["loss"])) > 1e-3
