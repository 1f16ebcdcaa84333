"""Tests for vitlab.core.heads: DPT (CroCo-Stereo configuration), SETR linear and PUP heads."""

from __future__ import annotations

import pytest
import torch
import torch.nn as nn

from vitlab.core.backbones import ViT
from vitlab.core.heads import DPTHead, LinearHead, ProgressiveUpsamplingHead

torch.manual_seed(0)

SMALL_DPT = dict(layer_dims=(8, 16, 24, 32), feature_dim=32, last_dim=8)


def _maps(B, C, H, W, patch, n=4):
    return [torch.randn(B, C, H // patch, W // patch, requires_grad=True) for _ in range(n)]


def test_dpt_default_widths():
    head = DPTHead(768, 2)
    convs = [seq[0] for seq in head.act_postprocess]
    assert [c.out_channels for c in convs] == [96, 192, 384, 768]
    assert all(c.kernel_size == (1, 1) for c in convs)
    assert all(
        rn.out_channels == 256 and rn.bias is None and rn.kernel_size == (3, 3) for rn in head.layer_rn
    )
    ups = [seq[1] for seq in head.act_postprocess]
    assert isinstance(ups[0], nn.ConvTranspose2d) and ups[0].kernel_size == (4, 4) and ups[0].stride == (4, 4)
    assert isinstance(ups[1], nn.ConvTranspose2d) and ups[1].kernel_size == (2, 2) and ups[1].stride == (2, 2)
    assert isinstance(ups[2], nn.Identity)
    assert isinstance(ups[3], nn.Conv2d) and ups[3].kernel_size == (3, 3) and ups[3].stride == (2, 2)
    convs_head = [m for m in head.head if isinstance(m, nn.Conv2d)]
    assert [(c.in_channels, c.out_channels) for c in convs_head] == [(256, 128), (128, 32), (32, 2)]
    assert not isinstance(head.head[-1], (nn.ReLU, nn.Sigmoid))  # raw output


@pytest.mark.parametrize("H,W", [(64, 96), (96, 128)])
def test_dpt_output_size_levels_and_gradients(H, W):
    head = DPTHead([16, 24, 32, 40], 2, **SMALL_DPT)
    feats = [torch.randn(2, c, H // 16, W // 16, requires_grad=True) for c in (16, 24, 32, 40)]
    sizes = []
    hooks = [
        m.register_forward_hook(lambda mod, i, o: sizes.append(tuple(o.shape[-2:])))
        for m in head.act_postprocess
    ]
    out = head(feats, (H, W))
    for h in hooks:
        h.remove()
    assert out.shape == (2, 2, H, W)
    assert sizes == [(H // 4, W // 4), (H // 8, W // 8), (H // 16, W // 16), (H // 32, W // 32)]
    out.square().mean().backward()
    assert all(f.grad is not None and f.grad.abs().sum() > 0 for f in feats)
    unused = [n for n, p in head.named_parameters() if p.grad is None]
    assert unused == []  # DDP-friendly: every parameter is used
    assert out.min() < 0 or out.max() > 0


def test_dpt_tokens_equal_maps_and_errors():
    head = DPTHead(16, 3, **SMALL_DPT).eval()
    maps = [torch.randn(1, 16, 4, 6) for _ in range(4)]
    tokens = [m.flatten(2).transpose(1, 2) for m in maps]
    with torch.no_grad():
        assert torch.allclose(head(maps, (64, 96)), head(tokens, (64, 96)))
        out, feat = head(maps, (64, 96), return_features=True)
        assert feat.shape == (1, 32, 32, 48)
    with pytest.raises(ValueError, match="4 feature maps"):
        head(maps[:3], (64, 96))
    with pytest.raises(ValueError, match="tokens"):
        head([torch.randn(1, 25, 16)] * 4, (64, 96))


@pytest.mark.parametrize("patch,H,W", [(16, 48, 80), (8, 64, 96), (8, 40, 56), (14, 56, 84)])
def test_dpt_other_sizes_and_patches(patch, H, W):
    head = DPTHead(16, 1, patch_size=patch, **SMALL_DPT)
    out = head(_maps(1, 16, H, W, patch), (H, W))
    assert out.shape == (1, 1, H, W)
    if patch == 8:  # levels stay at strides 4/8/16/32 of the image
        assert head.scale_factors == [2.0, 1.0, 0.5, 0.25]


def test_dpt_on_vit_end_to_end():
    vit = ViT(embed_dim=32, depth=4, num_heads=4, img_size=64, pos_embed="rope", class_token=False)
    head = DPTHead(32, 2, **SMALL_DPT)
    x = torch.randn(2, 3, 64, 96)
    out = head(vit.forward_intermediates(x), x.shape[-2:])
    assert out.shape == (2, 2, 64, 96)
    out.mean().backward()
    assert vit.blocks[0].attn.qkv.weight.grad.abs().sum() > 0


@pytest.mark.parametrize("hidden_dim", [None, 16])
def test_linear_head(hidden_dim):
    feats = _maps(2, 32, 64, 96, 16)
    head = LinearHead(32, 5, hidden_dim=hidden_dim)
    out = head(feats, (64, 96))
    assert out.shape == (2, 5, 64, 96)
    out.mean().backward()
    assert feats[-1].grad is not None and feats[0].grad is None  # "last" uses only the last map
    cat = LinearHead([32] * 4, 5, input="concat", hidden_dim=hidden_dim)
    feats = _maps(2, 32, 64, 96, 16)
    out = cat(feats, (64, 96))
    assert out.shape == (2, 5, 64, 96)
    out.mean().backward()
    assert all(f.grad is not None for f in feats)
    with pytest.raises(ValueError):
        LinearHead(32, 5, input="sum")


@pytest.mark.parametrize("patch,H,W,n_up", [(16, 64, 96, 4), (8, 32, 48, 3), (14, 56, 42, 4)])
def test_pup_head(patch, H, W, n_up):
    head = ProgressiveUpsamplingHead(32, 3, patch_size=patch, channels=16, norm="gn")
    assert head.num_upsamples == n_up
    assert sum(isinstance(m, nn.Upsample) for m in head.modules()) == n_up
    feats = _maps(2, 32, H, W, patch)
    out = head(feats, (H, W))
    assert out.shape == (2, 3, H, W)
    out.mean().backward()
    assert feats[-1].grad is not None and head.cls.weight.grad is not None
    bn = ProgressiveUpsamplingHead(32, 3, num_upsamples=2, channels=16, norm="bn")
    assert bn(feats, (H, W)).shape == (2, 3, H, W)
    assert sum(isinstance(m, nn.BatchNorm2d) for m in bn.modules()) == 2
