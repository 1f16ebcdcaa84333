"""Loss numerics against hand-computed values (norm-pix MSE, SimMIM L1) and patchify layout."""

from __future__ import annotations

import torch

from vitlab.pretrain import masked_l1, masked_mse, norm_pix_target, patchify, unpatchify


def test_patchify_layout_and_inverse():
    x = torch.arange(2 * 3 * 4 * 4, dtype=torch.float32).reshape(2, 3, 4, 4)
    p = patchify(x, 2)
    assert p.shape == (2, 4, 12)
    # patch (0,1) of image 0, pixel (0,0): channels last -> x[0, :, 0, 2]
    assert torch.equal(p[0, 1, :3], x[0, :, 0, 2])
    # pixel (1,0) of patch 0 -> offset (1*2+0)*3
    assert torch.equal(p[0, 0, 6:9], x[0, :, 1, 0])
    assert torch.equal(unpatchify(p, 2, (2, 2)), x)


def test_norm_pix_uses_unbiased_var_plus_eps():
    t = torch.tensor([[[1.0, 2.0, 3.0, 6.0]]])
    mean = 3.0
    var = ((1 - 3) ** 2 + (2 - 3) ** 2 + 0 + (6 - 3) ** 2) / 3  # unbiased: 14 / 3
    ref = (t - mean) / (var + 1e-6) ** 0.5
    assert torch.allclose(norm_pix_target(t), ref)


def test_masked_mse_hand_computed():
    pred = torch.tensor([[[1.0, 1.0], [0.0, 0.0], [2.0, 0.0]]])
    tgt = torch.zeros(1, 3, 2)
    mask = torch.tensor([[1.0, 0.0, 1.0]])
    # per-patch mse: [1, 0, 2] ; masked mean over patches 0 and 2 = 1.5
    assert torch.isclose(masked_mse(pred, tgt, mask), torch.tensor(1.5))


def test_simmim_l1_hand_computed():
    pred = torch.zeros(1, 3, 2, 2)
    x = torch.zeros(1, 3, 2, 2)
    x[0, :, 0, 0] = torch.tensor([1.0, 2.0, 3.0])  # masked pixel
    x[0, :, 1, 1] = 5.0  # visible pixel: ignored
    m = torch.zeros(1, 1, 2, 2)
    m[0, 0, 0, 0] = 1.0
    m[0, 0, 0, 1] = 1.0
    ref = (1 + 2 + 3) / (2 + 1e-5) / 3
    assert torch.isclose(masked_l1(pred, x, m), torch.tensor(ref))
