"""The ``mtinet`` augmentation against the official MTI-Net-family code (``tests/data/golden/mtl_transforms``,
scale-lab/MTLoRA@333a375 ``data/custom_transforms.py``): flip → ScaleNRotate → FixedResize on fixed draws."""

import random

import pytest
import torch

from vitlab.mtl.transforms import MultiTaskTransform, fixed_resize, rotate_normals, scale_rotate

from ._golden import load

DATA = load("mtl_transforms")["data"]


def vitlab_input() -> dict:
    x = DATA["input"]
    return {"image": x["image"].permute(2, 0, 1) / 255, "semseg": x["semseg"].long(),
            "human_parts": x["human_parts"].long(), "sal": x["sal"][None], "edge": x["edge"][None],
            "normals": x["normals"].permute(2, 0, 1)}


def test_normal_example_rotates_in_plane():
    ex = DATA["normal_example"]
    out = rotate_normals(ex["in"].view(3, 1, 1), ex["angle"]).flatten()
    torch.testing.assert_close(out, ex["out"], atol=1e-6, rtol=0)
    torch.testing.assert_close(out, torch.tensor([0.5638, -0.2052, 0.8]), atol=1e-4, rtol=0)


@pytest.mark.parametrize("case", range(3))
def test_scale_rotate_resize_equal_official(case):
    c = DATA["cases"][case]
    t = MultiTaskTransform(DATA["size"], "mtinet")
    s = vitlab_input()
    if c["flip"]:
        s = t._flip(s)
    s = fixed_resize(scale_rotate(s, c["angle"], c["scale"]), DATA["size"])
    ref = c["out"]
    for k in ("semseg", "human_parts", "sal", "edge"):  # nearest neighbour: the same source pixels
        assert torch.equal(s[k].float().squeeze(0), ref[k]), k
    # bicubic (measured max 0.001 of 255 for the image, 1e-4 for the normals: float32 and OpenCV's weights)
    img = (s["image"] * 255 - ref["image"].permute(2, 0, 1)).abs()
    assert img.max() < 0.01, img.max()
    theirs = ref["normals"].permute(2, 0, 1)
    theirs = torch.where(theirs == 255, torch.zeros_like(theirs), theirs)  # AddIgnoreRegions' 255 = our 0
    nrm = (s["normals"] - theirs).abs()
    assert nrm.max() < 1e-3, nrm.max()
    assert ((s["normals"].norm(dim=0) == 0) == (theirs.norm(dim=0) == 0)).all()


def test_transform_draws_flip_angle_scale_in_the_official_order():
    random.seed(3)
    flip, angle, sc = random.random() < 0.5, random.uniform(-20, 20), random.uniform(0.75, 1.25)
    s = vitlab_input()
    expected = fixed_resize(scale_rotate(MultiTaskTransform(DATA["size"])._flip(s) if flip else s, angle, sc),
                            DATA["size"])
    random.seed(3)
    got = MultiTaskTransform(DATA["size"], "mtinet")(vitlab_input())
    for k in expected:
        assert torch.equal(got[k], expected[k]), k


def test_fill_zero_is_background_and_ignore_is_255():
    s = vitlab_input()
    zero = scale_rotate(s, 20.0, 0.75)
    ignore = scale_rotate(s, 20.0, 0.75, fill="ignore")
    probe = scale_rotate({"image": s["image"], "semseg": torch.ones_like(s["semseg"])}, 20.0, 0.75, fill="ignore")
    outside = probe["semseg"] == 255
    assert outside.any() and (zero["semseg"][outside] == 0).all() and (ignore["semseg"][outside] == 255).all()
    assert torch.equal(zero["semseg"][~outside], ignore["semseg"][~outside])
    with pytest.raises(ValueError, match="fill"):
        MultiTaskTransform((8, 8), fill="black")
