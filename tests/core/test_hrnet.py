import torch

from vitlab.core.backbones.hrnet import HRNetFeatures


def test_hrnet_w18_small_v2_branches():
    m = HRNetFeatures().eval()
    assert m.out_channels == [18, 36, 72, 144] and m.strides == [4, 8, 16, 32]
    with torch.no_grad():
        feats = m(torch.randn(1, 3, 64, 64))
    assert [tuple(f.shape[1:]) for f in feats] == [(18, 16, 16), (36, 8, 8), (72, 4, 4), (144, 2, 2)]
