"""DAFormer head: structure (MLP embeddings, depthwise-separable ASPP), shapes, gradients."""

from __future__ import annotations

import torch
from torch import nn

from vitlab.core import DAFormerHead, MiT


def test_shapes_stride4_and_resize():
    feats = [torch.randn(2, c, 32 // s, 48 // s) for c, s in zip((32, 64, 160, 256), (1, 2, 4, 8), strict=True)]
    head = DAFormerHead((32, 64, 160, 256), num_classes=19, embed_dim=64)
    assert head(feats).shape == (2, 19, 32, 48)
    assert head(feats, image_size=(128, 192)).shape == (2, 19, 128, 192)


def test_aspp_structure():
    head = DAFormerHead((64, 128, 320, 512), 19)
    assert [e.in_features for e in head.embed] == [64, 128, 320, 512]
    assert all(e.out_features == 256 for e in head.embed)
    b = head.fuse.branches
    assert isinstance(b[0][0], nn.Conv2d) and b[0][0].kernel_size == (1, 1)
    for branch, d in zip(b[1:], (6, 12, 18), strict=True):
        dw, pw = branch[0][0], branch[1][0]
        assert dw.groups == 1024 and dw.dilation == (d, d) and dw.kernel_size == (3, 3)
        assert pw.kernel_size == (1, 1) and pw.out_channels == 256
    assert head.fuse.bottleneck[0].in_channels == 4 * 256 and head.fuse.bottleneck[0].kernel_size == (3, 3)
    assert head.dropout.p == 0.1 and head.classifier.out_channels == 19


def test_mit_plus_head_trains():
    torch.manual_seed(0)
    enc = MiT("b0", drop_path_rate=0.0, embed_dims=(8, 16, 32, 32), depths=(1, 1, 1, 1), num_heads=(1, 1, 2, 4))
    head = DAFormerHead((8, 16, 32, 32), 3, embed_dim=16, dropout=0.0)
    base = torch.randn(4, 3, 4, 4)
    x = nn.functional.interpolate(base, size=(32, 32), mode="nearest")
    y = (x[:, 0] > 0).long() + (x[:, 1] > 0).long()  # piecewise-constant 8x8 blocks
    opt = torch.optim.AdamW([*enc.parameters(), *head.parameters()], lr=3e-3)
    losses = []
    for _ in range(30):
        loss = nn.functional.cross_entropy(head(enc(x), image_size=(32, 32)), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.6 * losses[0]
