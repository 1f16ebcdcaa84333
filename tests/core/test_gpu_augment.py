"""Batched device-side photometric augmentation: the colour law, stereo (a)symmetry, blur, no host sync; mmseg's
photometric distortion of dense tasks against the workers' CPU class."""

from __future__ import annotations

import itertools

import pytest
import torch
from kornia.filters import gaussian_blur2d

from vitlab.core.data import transforms as dense
from vitlab.core.data.constants import IMAGENET_MEAN
from vitlab.core.data.gpu_augment import (
    BatchColorAugment,
    BatchPhotometricDistortion,
    gaussian_blur_per_sample,
)
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


# ---------------------------------------------------------------------------------------------------------------
# BatchPhotometricDistortion: mmseg's PhotoMetricDistortion law, batched
# ---------------------------------------------------------------------------------------------------------------


class _Script:
    """Stands in for ``random`` in the CPU :class:`PhotometricDistortion`: scripted coins and uniforms."""

    def __init__(self, coins: list[bool], values: list[float]) -> None:
        self.coins, self.values = list(coins), list(values)

    def random(self) -> float:  # a coin fires when random() < 0.5
        return 0.0 if self.coins.pop(0) else 1.0

    def uniform(self, a: float, b: float) -> float:
        v = self.values.pop(0)
        assert a <= v <= b, (a, v, b)
        return v


def _cpu_with(params: dict[str, torch.Tensor], i: int, image: torch.Tensor, monkeypatch) -> torch.Tensor:
    """The CPU class on ``image`` with image ``i``'s coins and factors, in the order the class draws them."""
    fire, first, v = params["fire"][i].tolist(), bool(params["contrast_first"][i]), params["values"][i].tolist()
    coins = [fire[0], first] + ([fire[1]] if first else []) + [fire[2], fire[3]] + ([] if first else [fire[1]])
    order = [0] + ([1] if first else []) + [2, 3] + ([] if first else [1])
    monkeypatch.setattr(dense, "random", _Script(coins, [v[k] for k in order if fire[k]]))
    return dense.PhotometricDistortion()(image)


def test_photometric_law_matches_the_cpu_class_step_by_step(monkeypatch):
    combos = list(itertools.product([False, True], repeat=5))  # 4 step coins x contrast first/last
    B = len(combos)
    g = torch.Generator().manual_seed(0)
    x = torch.rand(B, 3, 8, 8, generator=g)
    aug = BatchPhotometricDistortion()
    params = aug.sample(B, "cpu")
    params["fire"] = torch.tensor([c[:4] for c in combos])
    params["contrast_first"] = torch.tensor([c[4] for c in combos])
    ours = aug.apply(x, params)
    for i in range(B):
        # saturation: kornia's grey weights (0.299) vs torchvision's (0.2989); hue: two HSV round trips
        torch.testing.assert_close(ours[i], _cpu_with(params, i, x[i], monkeypatch), rtol=0, atol=5e-4)
    assert torch.equal(ours[0], x[0])  # no step fires: untouched


def test_photometric_parameters_follow_mmsegs_law():
    torch.manual_seed(0)
    p = BatchPhotometricDistortion().sample(20000, "cpu")
    assert (p["fire"].float().mean(0) - 0.5).abs().max() < 0.02
    assert abs(float(p["contrast_first"].float().mean()) - 0.5) < 0.02
    lo = torch.tensor([-32 / 255, 0.5, 0.5, -0.1])
    hi = torch.tensor([32 / 255, 1.5, 1.5, 0.1])
    v = p["values"]
    assert ((v >= lo) & (v <= hi)).all()
    torch.testing.assert_close(v.mean(0), (lo + hi) / 2, rtol=0, atol=0.02)
    # per-image independence: the four coins of an image are uncorrelated, and so are two images
    corr = torch.corrcoef(p["fire"].float().T)
    assert (corr - torch.eye(4)).abs().max() < 0.03
    assert abs(float(torch.corrcoef(p["values"][:, 1].view(2, -1))[0, 1])) < 0.03


def test_photometric_is_drawn_per_image_and_keeps_the_range():
    torch.manual_seed(1)
    x = torch.rand(1, 3, 8, 8).expand(16, 3, 8, 8).contiguous()
    out = BatchPhotometricDistortion()({"image": x, "semantic": torch.zeros(16, 8, 8, dtype=torch.long)})
    assert out["image"].min() >= 0 and out["image"].max() <= 1
    changed = [not torch.allclose(out["image"][i], x[i]) for i in range(16)]
    assert any(changed) and not all(changed)  # each image flips its own coins (P(all or none) ~ 2e-4)
    distinct = {tuple(out["image"][i, :, 0, 0].tolist()) for i in range(16)}
    assert len(distinct) > 8
    assert torch.equal(out["semantic"], torch.zeros(16, 8, 8, dtype=torch.long))


def test_photometric_leaves_padded_pixels_untouched():
    torch.manual_seed(2)
    x = torch.rand(4, 3, 12, 16)
    valid = torch.zeros(4, 12, 16, dtype=torch.bool)
    valid[:, :8, :10] = True
    x[:, :, 8:] = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)  # the pad fill of pad_sample
    x[:, :, :, 10:] = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)
    aug = BatchPhotometricDistortion(prob=1.0)
    out = aug({"image": x}, valid)["image"]
    assert torch.equal(out[:, :, 8:], x[:, :, 8:]) and torch.equal(out[:, :, :, 10:], x[:, :, :, 10:])
    assert not torch.allclose(out[:, :, :8, :10], x[:, :, :8, :10])


def test_photometric_no_host_sync():
    aug = BatchPhotometricDistortion()
    batch = {"image": torch.rand(4, 3, 8, 8)}
    valid = torch.ones(4, 8, 8, dtype=torch.bool)
    aug(batch, valid)
    with HostSyncCounter() as c:
        aug(batch, valid)
    assert c.count == 0, c.report()


def test_photometric_bad_arguments():
    with pytest.raises(ValueError, match="contrast_range"):
        BatchPhotometricDistortion(contrast_range=(1.5, 0.5))
    with pytest.raises(ValueError, match="prob"):
        BatchPhotometricDistortion(prob=2.0)
    with pytest.raises(KeyError, match="image"):
        BatchPhotometricDistortion()({"right": torch.rand(1, 3, 4, 4)})
