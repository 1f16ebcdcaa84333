"""Tiled inference: windows, fusion weights, equality with untiled prediction."""

from __future__ import annotations

import math

import pytest
import torch

from vitlab.stereo import confidence_weight, tile_offsets, tiled_predict


def test_tile_offsets_cover_the_image():
    assert tile_offsets(64, 64, 0.7) == [0]
    offs = tile_offsets(352 * 2, 352, 0.7)
    # n = 1 + ceil(352 / (0.3 * 352)) = 5
    assert len(offs) == 5 and offs[0] == 0 and offs[-1] == 352
    with pytest.raises(ValueError):
        tile_offsets(10, 32, 0.5)


def test_confidence_weights():
    c = torch.tensor([0.0, 3.0])
    assert torch.allclose(confidence_weight(c), torch.tensor([1.0, math.exp(-30 * (1 / (1 + math.exp(-1)) - 0.5))]))
    assert torch.allclose(confidence_weight(c, "conf_expbeta3"), torch.exp(-3 * c))


def _pixelwise(left, right):
    """A per-pixel 'network': disparity and confidence depend on the pixel's own values only."""
    return torch.cat([5.0 + left[:, :1] * 2 + right[:, 1:2], left[:, 2:3].sin()], dim=1)


@pytest.mark.parametrize("conf_mode", ["conf_expsigmoid_15_3", "conf_expbeta3"])
def test_tiled_equals_untiled_for_any_size(conf_mode):
    torch.manual_seed(0)
    left, right = torch.randn(2, 3, 70, 150), torch.randn(2, 3, 70, 150)
    full = _pixelwise(left, right)[:, :1]
    disp, conf = tiled_predict(_pixelwise, left, right, (32, 64), overlap=0.7, conf_mode=conf_mode)
    assert disp.shape == (2, 1, 70, 150) and conf.shape == disp.shape
    assert torch.allclose(disp, full, atol=1e-5)


def test_constant_disparity_network_tiled_equals_untiled(tiny_net):
    """A real (tiny) network made to predict a constant disparity: tiling any size gives the untiled map;
    with the window equal to the image, tiling is exactly one full-frame forward."""
    net = tiny_net().eval()
    torch.manual_seed(0)
    left, right = torch.randn(1, 3, 64, 160), torch.randn(1, 3, 64, 160)
    with torch.no_grad():
        net.head.head[-1].weight[0].zero_()
        net.head.head[-1].bias[0] = 7.5
        untiled = net(left[..., :128], right[..., :128])[:, :1]
    assert torch.allclose(untiled, torch.full_like(untiled, 7.5))
    disp, _ = tiled_predict(net, left, right, (64, 64), overlap=0.7)
    assert torch.allclose(disp, torch.full_like(disp, 7.5), atol=1e-5)
    net2 = tiny_net().eval()
    with torch.no_grad():
        full = net2(left[..., :128], right[..., :128])[:, :1]
    disp2, _ = tiled_predict(net2, left[..., :128], right[..., :128], (64, 128))
    assert torch.allclose(disp2, full, atol=1e-5)


def test_small_images_are_upscaled_and_disparity_rescaled():
    left, right = torch.randn(1, 3, 20, 40), torch.randn(1, 3, 20, 40)
    const = lambda a, b: torch.cat([torch.full_like(a[:, :1], 8.0), torch.zeros_like(a[:, :1])], 1)  # noqa: E731
    disp, _ = tiled_predict(const, left, right, (32, 64))
    assert disp.shape == (1, 1, 20, 40)
    assert torch.allclose(disp, torch.full_like(disp, 8.0 * 40 / 64), atol=1e-4)


def test_memory_budget_picks_full_frame_or_budget_tiles(tiny_net, caplog):
    """Within ``max_tokens`` one full-frame forward; above it the largest near-square windows within the budget
    (sides multiples of 32, inside the frame), batched to the budget; the choice is logged once per size."""
    import logging

    from vitlab.stereo import StereoMatching
    from vitlab.stereo.tiling import budget_window, frame_tokens

    assert frame_tokens(3000, 4000) == 188 * 250  # sides padded to 32, 16 px patches
    assert budget_window(3000, 4000, 16384) == (2048, 2048)
    assert budget_window(400, 4000, 4096) == (384, 2720)  # a short side is taken whole, the other grows
    h, w = budget_window(3000, 4000, 1000)
    assert h % 32 == 0 and w % 32 == 0 and (h // 16) * (w // 16) <= 1000
    mod = StereoMatching(tiny_net(), max_tokens=64).eval()
    assert mod.inference_plan((1, 3, 64, 128)).mode == "full frame"  # 4 x 8 = 32 tokens
    plan = mod.inference_plan((1, 3, 128, 256))  # 128 tokens > 64
    assert plan.mode == "budget tiles" and plan.window == (128, 128) and plan.max_batch == 1
    assert mod.inference_plan((1, 3, 128, 256), tiled=False).mode == "full frame"
    x = torch.randn(1, 3, 128, 256)
    with caplog.at_level(logging.INFO):
        disp, conf = mod.predict_disparity(x, x)
        mod.predict_disparity(x, x)
    assert disp.shape == conf.shape == (1, 1, 128, 256) and torch.isfinite(disp).all()
    lines = [r.getMessage() for r in caplog.records if "budget tiles of 128 x 128" in r.getMessage()]
    assert len(lines) == 1, [r.getMessage() for r in caplog.records]
    with pytest.raises(ValueError, match="max_tokens"):
        StereoMatching(tiny_net(), max_tokens=2)
