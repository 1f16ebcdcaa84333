"""DAFormer head: structure (MLP embeddings, depthwise-separable ASPP), shapes, gradients, and the official
code's initialisation and forward (golden values from ``lhoyer/DAFormer``, ``tests/data/golden/daformer/``)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import torch
from torch import nn

from vitlab.core import DAFormerHead, MiT

GOLDEN = Path(__file__).resolve().parents[1] / "data" / "golden" / "daformer" / "daformer.pt"


def official_to_vitlab(name: str) -> str:
    """Official ``DAFormerHead`` parameter name -> :class:`vitlab.core.DAFormerHead` name."""
    rules = [(r"^conv_seg\.", "classifier."), (r"^embed_layers\.(\d)\.proj\.", r"embed.\1."),
             (r"^fuse_layer\.aspp_modules\.0\.conv\.", "fuse.branches.0.0."),
             (r"^fuse_layer\.aspp_modules\.0\.bn\.", "fuse.branches.0.1."),
             (r"^fuse_layer\.aspp_modules\.(\d)\.depthwise_conv\.conv\.", r"fuse.branches.\1.0.0."),
             (r"^fuse_layer\.aspp_modules\.(\d)\.depthwise_conv\.bn\.", r"fuse.branches.\1.0.1."),
             (r"^fuse_layer\.aspp_modules\.(\d)\.pointwise_conv\.conv\.", r"fuse.branches.\1.1.0."),
             (r"^fuse_layer\.aspp_modules\.(\d)\.pointwise_conv\.bn\.", r"fuse.branches.\1.1.1."),
             (r"^fuse_layer\.bottleneck\.conv\.", "fuse.bottleneck.0."),
             (r"^fuse_layer\.bottleneck\.bn\.", "fuse.bottleneck.1.")]
    for pat, rep in rules:
        new, n = re.subn(pat, rep, name)
        if n:
            return new
    raise KeyError(name)


@pytest.fixture(scope="module")
def golden():
    return torch.load(GOLDEN, weights_only=False)["data"]


def test_golden_init_statistics(golden):
    """Default ``init="mmcv"``: every parameter's mean/std as the official head after ``init_weights()``.

    Tolerance: the std of a freshly drawn tensor differs from the official draw by sampling noise only
    (relative error about 1/sqrt(2n); n >= 9216 here, so < 1 %): 4 % relative, and means within 4 % of the std."""
    torch.manual_seed(0)
    head = DAFormerHead((64, 128, 320, 512), 19)
    params = dict(head.named_parameters())
    assert len(params) == len(golden["init"])
    for name, ref in golden["init"].items():
        p = params[official_to_vitlab(name)].detach()
        assert tuple(p.shape) == tuple(ref["shape"]), name
        if ref["std"] == 0:
            assert torch.all(p == ref["mean"]), name
            continue
        assert p.std().item() == pytest.approx(ref["std"], rel=0.04), name
        assert abs(p.mean().item() - ref["mean"]) < 0.04 * ref["std"] + 4 * ref["std"] / p.numel() ** 0.5, name


def test_pytorch_init_is_the_documented_switch(golden):
    """``init="pytorch"`` keeps PyTorch's conv init, which the official statistics rule out (5x / 13x off)."""
    torch.manual_seed(0)
    head = DAFormerHead((64, 128, 320, 512), 19, init="pytorch")
    ref = golden["init"]["fuse_layer.aspp_modules.0.conv.weight"]["std"]
    assert head.fuse.branches[0][0].weight.std().item() < 0.3 * ref
    ref_dw = golden["init"]["fuse_layer.aspp_modules.1.depthwise_conv.conv.weight"]["std"]
    assert head.fuse.branches[1][0][0].weight.std().item() > 5 * ref_dw
    with pytest.raises(ValueError, match="init must be one of"):
        DAFormerHead((8, 16), 3, init="xavier")


def test_golden_forward(golden):
    """The official head's weights loaded by name map give the official eval-mode logits (fp32, 1e-5)."""
    ref = golden["forward"]
    head = DAFormerHead((8, 16, 32, 32), 5, embed_dim=16)
    state = {official_to_vitlab(k): v for k, v in ref["state_dict"].items()}
    missing, unexpected = head.load_state_dict(state, strict=False)
    assert not unexpected and all(k.endswith("num_batches_tracked") for k in missing)
    head.eval()
    with torch.no_grad():
        out = head(ref["features"])
    assert out.shape == ref["logits"].shape
    torch.testing.assert_close(out, ref["logits"], rtol=1e-5, atol=1e-5)


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
