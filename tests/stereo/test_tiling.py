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
