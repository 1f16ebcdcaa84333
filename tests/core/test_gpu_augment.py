"""Batched device-side photometric augmentation: the colour law, stereo (a)symmetry, blur, no host sync."""

from __future__ import annotations

import pytest
import torch
from kornia.filters import gaussian_blur2d

from vitlab.core.data.gpu_augment import BatchColorAugment, gaussian_blur_per_sample
from vitlab.core.perf import HostSyncCounter

IDENTITY = dict(contrast=(1.0, 1.0), gamma=(1.0, 1.0), brightness=(1.0, 1.0), hue=(0.0, 0.0),
                saturation=(1.0, 1.0))


def _pair(b=6, h=8, w=8, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(b, 3, h, w, generator=g) * 0.8 + 0.1
    return {"image": x, "right": x.clone(), "disparity": torch.rand(b, 1, h, w, generator=g)}


def test_output_range_types_and_passthrough():
    torch.manual_seed(0)
    aug = BatchColorAugment(blur_prob=0.5)
    batch = _pair()
    batch["image"] = (batch["image"] * 255).to(torch.uint8)  # uint8 from workers is accepted
    out = aug(batch)
    for k in ("image", "right"):
        assert out[k].shape == (6, 3, 8, 8) and out[k].dtype == torch.float32
        assert out[k].min() >= 0 and out[k].max() <= 1
    assert out["disparity"] is batch["disparity"]
    with pytest.raises(KeyError, match="right"):
        aug({"image": batch["right"]})


def test_symmetric_and_asymmetric_colour():
    torch.manual_seed(0)
    always = dict(op_prob=1.0, one_op_prob=0.0)
    sym = BatchColorAugment(asym_prob=0.0, **always)(_pair())
    torch.testing.assert_close(sym["image"], sym["right"])
    assert not torch.allclose(sym["image"], _pair()["image"])
    asym = BatchColorAugment(asym_prob=1.0, **always)(_pair())
    diff = (asym["image"] - asym["right"]).abs().flatten(1).amax(1)
    assert (diff > 1e-3).all()


def test_right_view_follows_crocos_per_op_asymmetry():
    aug = BatchColorAugment(asym_prob=0.5, one_op_prob=0.0, op_prob=0.5)
    torch.manual_seed(1)
    left = aug.sample(4000, "cpu")
    right = aug.right_params(left)
    assert torch.equal(right["order"], left["order"]) and torch.equal(right["active"], left["active"])
    redrawn = (right["values"] != left["values"]).float()
    assert abs(float(redrawn.mean()) - 0.5) < 0.02  # per op, not all five together
    per_image = redrawn.sum(1)
    assert ((per_image > 0) & (per_image < 5)).float().mean() > 0.8
    # the right view never changes alone: with no op firing on the left, both views stay as they are
    none = BatchColorAugment(asym_prob=1.0, op_prob=0.0)(_pair())
    torch.testing.assert_close(none["right"], _pair()["right"])


def test_op_prob_zero_is_identity_and_one_op_mode_selects_one():
    x = _pair()
    out = BatchColorAugment(op_prob=0.0)(x)
    torch.testing.assert_close(out["image"], x["image"])
    params = BatchColorAugment(one_op_prob=1.0, op_prob=1.0).sample(1000, "cpu")
    assert (params["active"].sum(1) == 1).all() and params["active"][:, 0].all()
    allp = BatchColorAugment(one_op_prob=0.0, op_prob=1.0).sample(50, "cpu")
    assert allp["active"].all()
    assert all(sorted(r.tolist()) == [0, 1, 2, 3, 4] for r in allp["order"])  # a random order of the 5 ops
    half = BatchColorAugment(one_op_prob=0.0, op_prob=0.5).sample(4000, "cpu")["active"].float().mean()
    assert abs(float(half) - 0.5) < 0.03


def test_brightness_and_gamma_follow_their_law():
    torch.manual_seed(1)
    x = _pair()["image"] * 0.4 + 0.05  # brightness up to 2x stays below 1
    aug = BatchColorAugment(keys=("image",), op_prob=1.0, one_op_prob=0.0, **{**IDENTITY, "brightness": (0.5, 2.0)})
    out = aug({"image": x})["image"]
    factor = (out / x).flatten(1)
    torch.testing.assert_close(factor, factor[:, :1].expand_as(factor), rtol=1e-4, atol=1e-5)
    assert ((factor[:, 0] >= 0.5 - 1e-5) & (factor[:, 0] <= 2.0 + 1e-5)).all()
    aug = BatchColorAugment(keys=("image",), op_prob=1.0, one_op_prob=0.0, **{**IDENTITY, "gamma": (0.7, 1.5)})
    out = aug({"image": x})["image"]
    g = (out.log() / x.log()).flatten(1)
    torch.testing.assert_close(g, g[:, :1].expand_as(g), rtol=1e-3, atol=1e-4)
    assert ((g[:, 0] >= 0.7 - 1e-4) & (g[:, 0] <= 1.5 + 1e-4)).all()


def test_per_sample_blur_matches_kornia():
    g = torch.Generator().manual_seed(2)
    x = torch.rand(3, 3, 16, 16, generator=g)
    sigma = torch.tensor([0.5, 1.0, 2.0])
    ours = gaussian_blur_per_sample(x, sigma, 5)
    for i in range(3):
        ref = gaussian_blur2d(x[i:i + 1], (5, 5), (float(sigma[i]), float(sigma[i])), border_type="reflect")
        torch.testing.assert_close(ours[i:i + 1], ref, rtol=1e-5, atol=1e-5)
    with pytest.raises(ValueError, match="odd"):
        gaussian_blur_per_sample(x, sigma, 4)


def test_no_host_sync():
    aug = BatchColorAugment(blur_prob=0.5)
    batch = _pair()
    aug(batch)
    with HostSyncCounter() as c:
        aug(batch)
    assert c.count == 0, c.report()


def test_bad_arguments():
    with pytest.raises(ValueError, match="asym_prob"):
        BatchColorAugment(asym_prob=1.5)
    with pytest.raises(ValueError, match="gamma"):
        BatchColorAugment(gamma=(1.5, 0.7))
    with pytest.raises(ValueError, match="keys"):
        BatchColorAugment(keys=("a", "b", "c"))
