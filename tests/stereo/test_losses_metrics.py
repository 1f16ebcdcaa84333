"""Losses and metrics against hand-computed values."""

from __future__ import annotations

import math

import pytest
import torch

from vitlab.stereo import (
    LaplacianLoss,
    LaplacianLossBounded2,
    MaskedMSE,
    StereoL1Loss,
    StereoMetrics,
    feature_warp_consistency,
)

INF = math.inf


def _pred(d, c):
    return torch.tensor([[d], [c]], dtype=torch.float32).view(1, 2, 1, len(d))


def test_laplacian_losses_by_hand():
    pred = _pred([1.0, 2.0, 5.0], [0.0, 3.0, -1.0])
    gt = torch.tensor([[[[2.0, 2.5, INF]]]])
    # bounded: c' = 6 (sigmoid(c / 3) - 0.5): c = 0 -> 0, c = 3 -> 6 (sigmoid(1) - 0.5)
    c2 = 6 * (1 / (1 + math.exp(-1)) - 0.5)
    expected = (1.0 * 1 + 0) / 2 + (0.5 * math.exp(-c2) + c2) / 2
    assert LaplacianLossBounded2()(pred, gt).item() == pytest.approx(expected, rel=1e-6)
    assert LaplacianLoss()(pred, gt).item() == pytest.approx((1.0 + 0.5 * math.exp(-3) + 3) / 2, rel=1e-6)
    assert StereoL1Loss()(pred, gt).item() == pytest.approx(0.75)


def test_losses_ignore_invalid_and_survive_empty_gt():
    pred = _pred([1.0, 2.0], [0.5, 0.5]).requires_grad_()
    gt = torch.full((1, 1, 1, 2), INF)
    loss = LaplacianLossBounded2()(pred, gt)
    assert loss.item() == 0.0 and loss.requires_grad
    loss.backward()


def test_masked_mse_norm_pix_by_hand():
    target = torch.tensor([[[1.0, 3.0], [0.0, 0.0]]])
    pred = torch.zeros(1, 2, 2)
    mask = torch.tensor([[True, False]])
    # patch 0: mean 2, var (unbiased) 2 -> normalised (+-1/sqrt(2 + 1e-6)); mse vs 0 = 1 / (2 + 1e-6)
    assert MaskedMSE()(pred, target, mask).item() == pytest.approx(1 / (2 + 1e-6), rel=1e-5)
    assert MaskedMSE(norm_pix=False)(pred, target, mask).item() == pytest.approx(5.0)
    assert MaskedMSE()(pred, target, torch.zeros(1, 2, dtype=torch.bool)).item() == 0.0


def test_d1_and_bad_at_the_boundaries():
    gt = torch.tensor([[[[100.0, 100.0, 10.0, 50.0, INF]]]])
    pred = torch.tensor([[[[103.5, 105.5, 13.5, 50.4, 0.0]]]])
    m = StereoMetrics(reduction="pixel")
    m.update(pred, gt)
    r = m.compute()
    # errors 3.5, 5.5, 3.5, 0.4; D1: >3 and >5%: 3.5/100 no, 5.5/100 yes, 3.5/10 yes, 0.4 no -> 50 %
    assert r["d1"].item() == pytest.approx(50.0)
    assert r["bad3"].item() == pytest.approx(75.0) and r["bad4"].item() == pytest.approx(25.0)
    assert r["bad0.5"].item() == pytest.approx(75.0)
    assert r["epe"].item() == pytest.approx((3.5 + 5.5 + 3.5 + 0.4) / 4, rel=1e-6)
    assert r["rmse"].item() == pytest.approx(math.sqrt((3.5**2 * 2 + 5.5**2 + 0.16) / 4), rel=1e-6)


def test_pixel_pooling_vs_per_image_and_masks():
    gt = torch.tensor([[[[1.0, 1.0, 1.0, 1.0]]], [[[1.0, INF, INF, INF]]]])
    pred = torch.tensor([[[[1.0, 1.0, 1.0, 1.0]]], [[[3.0, 0.0, 0.0, 0.0]]]])
    px, img = StereoMetrics("pixel"), StereoMetrics("image")
    px.update(pred, gt)
    img.update(pred, gt)
    assert px.compute()["epe"].item() == pytest.approx(2.0 / 5)
    assert img.compute()["epe"].item() == pytest.approx((0.0 + 2.0) / 2)
    noc = StereoMetrics("pixel")
    noc.update(pred, gt, mask=torch.tensor([[[[True, True, True, True]]], [[[False, True, True, True]]]]))
    assert noc.compute()["epe"].item() == 0.0
    sf = StereoMetrics("pixel", max_disparity=2.0)
    sf.update(torch.zeros(1, 1, 1, 2), torch.tensor([[[[1.0, 5.0]]]]))
    assert sf.compute()["epe"].item() == pytest.approx(1.0)


def test_feature_warp_consistency_fixed_is_zero_for_exact_shift():
    B, C, h, w = 1, 4, 2, 8
    fr = torch.randn(B, C, h, w)
    shift = 2  # patch units -> 32 px GT with 16 px patches
    fl = torch.zeros_like(fr)
    fl[..., shift:] = fr[..., :-shift]  # left at x sees right at x - d
    disp = torch.full((B, 1, h * 16, w * 16), 32.0)
    tok = lambda f: f.flatten(2).transpose(1, 2)  # noqa: E731
    loss = feature_warp_consistency(tok(fl), tok(fr), disp, (h, w), 16, mode="fixed")
    # columns x < shift sample outside the right image (zero padding) and are not exact: only they contribute
    wrong = (fl[..., :shift]).abs().sum() / (C * h * w)
    assert loss.item() == pytest.approx(wrong.item(), abs=1e-5)
    vis = torch.ones(B, h * w, dtype=torch.bool).view(B, h, w)
    vis[..., :shift] = False
    assert feature_warp_consistency(tok(fl), tok(fr), disp, (h, w), 16, visible=vis.flatten(1)).item() < 1e-5
    official = feature_warp_consistency(tok(fl), tok(fr), disp, (h, w), 16, mode="official")
    assert official.item() > 1e-3  # the patch-unit shift on a [0, 1] grid warps far off: not consistent
