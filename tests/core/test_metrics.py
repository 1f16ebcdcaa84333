import math

import pytest
import torch

from vitlab.core.metrics import DepthMetrics


def test_depth_metrics_hand_computed():
    pred = torch.tensor([[[[2.0, 2.0], [3.0, 1.0]]]])
    gt = torch.tensor([[[[1.0, 2.0], [4.0, float("inf")]]]])  # last pixel invalid
    m = DepthMetrics()
    m.update(pred, gt)
    out = m.compute()
    assert out["abs_rel"] == pytest.approx((1.0 + 0.0 + 0.25) / 3)
    assert out["sq_rel"] == pytest.approx((1.0 + 0.0 + 0.25) / 3)
    assert out["rmse"] == pytest.approx(math.sqrt((1 + 0 + 1) / 3))
    assert out["delta1"] == pytest.approx(1 / 3)  # ratios 2, 1, 4/3 -> only 1 < 1.25
    assert out["delta2"] == pytest.approx(2 / 3)  # 4/3 < 1.5625
    assert out["log10"] == pytest.approx((math.log10(2) + 0 + abs(math.log10(0.75))) / 3, rel=1e-5)


def test_depth_metrics_average_per_image():
    m = DepthMetrics()
    m.update(torch.full((1, 1, 2, 2), 2.0), torch.full((1, 1, 2, 2), 1.0))  # abs_rel 1
    m.update(torch.ones(1, 1, 4, 4), torch.ones(1, 1, 4, 4))  # abs_rel 0, more pixels
    assert m.compute()["abs_rel"] == pytest.approx(0.5), "images count equally, not pixels"
    empty = DepthMetrics()
    empty.update(torch.ones(1, 1, 2, 2), torch.full((1, 1, 2, 2), float("inf")))
    assert int(empty.num_images) == 0


def test_depth_metrics_shape_error():
    with pytest.raises(ValueError, match="differ"):
        DepthMetrics().update(torch.ones(1, 1, 2, 2), torch.ones(1, 1, 2, 3))
