"""iConFormer: input-conditioned kernels, the dynamic convolution, FilterNorm and the ViT-B budget."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from vitlab.core import ViT
from vitlab.peft import DynamicAdapter, FilterNorm, dynamic_depthwise_conv, iConFormer


def test_dynamic_depthwise_conv_matches_per_sample_convolution():
    torch.manual_seed(0)
    u, k = torch.randn(3, 4, 5, 6), torch.randn(3, 4, 3, 3)
    out = dynamic_depthwise_conv(u, k)
    for b in range(3):
        ref = F.conv2d(u[b:b + 1], k[b].unsqueeze(1), padding=1, groups=4)
        torch.testing.assert_close(out[b:b + 1], ref)


def test_filter_norm_standardises_each_kernel():
    fn = FilterNorm(channels=4, kernel_size=3)
    with torch.no_grad():
        fn.std.fill_(2.0)
        fn.mean.fill_(0.5)
    theta = fn(torch.randn(2, 4, 9) * 7 + 3)
    torch.testing.assert_close(theta.mean(-1), torch.full((2, 4), 0.5), atol=1e-5, rtol=0)
    torch.testing.assert_close(theta.std(-1, unbiased=False), torch.full((2, 4), 2.0), atol=1e-3, rtol=0)


def test_kernels_depend_on_the_input(make_vit):
    vit = make_vit()
    iConFormer(bottleneck=8).apply(vit)
    adapter = vit.blocks[1].mlp.adapter
    assert isinstance(adapter, DynamicAdapter)
    seen = {}

    def grab(module, args, output):
        seen["k"] = module.adapter.kernels(args[0])  # the tracker holds the grid of the current input

    h = vit.blocks[1].mlp.register_forward_hook(grab)
    vit(torch.randn(1, 3, 32, 32))
    k1 = seen["k"]
    vit(torch.randn(1, 3, 32, 32) * 2 + 1)
    k2 = seen["k"]
    h.remove()
    assert k1.shape == (1, 8, 3, 3)
    assert (k1 - k2).abs().max() > 1e-3, "iCoN kernels did not change with the input"
    # two samples of one batch get their own kernels
    tokens = torch.randn(2, 1 + 16, 48)
    kb = adapter.kernels(tokens, grid=(4, 4))
    assert not torch.allclose(kb[0], kb[1])


def test_adapter_output_matches_hand_computation():
    torch.manual_seed(0)
    a = DynamicAdapter(dim=6, bottleneck=3, kernel_size=3, scale=0.1)
    torch.nn.init.normal_(a.up.weight)
    x = torch.randn(2, 1 + 12, 6)  # class token + 3x4 grid
    u = F.gelu(a.down(x))
    grid = u[:, 1:].transpose(1, 2).reshape(2, 3, 3, 4)
    theta = a.icon(grid)
    conv = torch.stack([F.conv2d(grid[b:b + 1], theta[b].unsqueeze(1), padding=1, groups=3)[0] for b in range(2)])
    cls = u[:, :1] * theta[:, :, 1, 1].unsqueeze(1)
    want = 0.1 * a.up(torch.cat([cls, conv.flatten(2).transpose(1, 2)], 1))
    torch.testing.assert_close(a(x, grid=(3, 4)), want)
    with pytest.raises(ValueError, match="grid"):
        a(torch.randn(2, 10, 6), grid=(3, 4))


def test_vit_base_defaults_train_1p6_to_2p8_percent():
    """The paper's budget: 1.6-2.8 % of the backbone's parameters for ViT-B with the default adapter."""
    vit = ViT("base")
    tuner = iConFormer()
    tuner.apply(vit)
    stats = tuner.trainable_parameters(vit)
    D, r, k, depth = 768, 64, 3, 12
    per_block = (D * r + r) + (r * r * k * k + r * k * k) + 2 * r * k * k + (r * D + D)
    assert stats["trainable"] == depth * per_block == 1_652_736
    assert stats["base"] == 85_647_360
    assert 1.6 <= stats["percent_of_base"] <= 2.8
    assert 1.6 <= stats["percent"] <= 2.8


def test_grid_follows_non_square_inputs_and_rejects_token_dropping(make_vit):
    vit = make_vit()
    iConFormer(bottleneck=8).apply(vit)
    assert vit.forward_intermediates(torch.randn(1, 3, 24, 56))[0].shape == (1, 48, 3, 7)
    ids_keep = torch.arange(8).unsqueeze(0)
    with pytest.raises(ValueError, match="token dropping"):
        vit.forward_features(torch.randn(1, 3, 32, 32), ids_keep=ids_keep)
