"""Stereo readers on fixtures written in each real format (tests/data/<dataset>/make_fixtures.py) and on the
real samples in ../shared/data; the mixing DataModule and the augmentor."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch

from vitlab.core.data.io import DatasetFormatError
from vitlab.stereo import (
    ETH3DStereo,
    KITTIStereo,
    MiddleburyStereo,
    SceneFlowStereo,
    StereoAugmentor,
    StereoDataModule,
)

DATA = Path(__file__).resolve().parents[1] / "data"


def _finite(d: torch.Tensor) -> torch.Tensor:
    return d[torch.isfinite(d)]


def test_sceneflow_fixture_splits_and_values():
    train = SceneFlowStereo(str(DATA / "sceneflow"), split="train", passes=["clean", "final"])
    assert len(train) == 2 * 4  # things TRAIN 2 + driving 1 + monkaa 1, two passes
    test = SceneFlowStereo(str(DATA / "sceneflow"), split="test")
    assert len(test) == 1 and "TEST" in test.pairs[0][0]
    s = train[0]
    assert s["image"].shape == (3, 24, 40) and s["disparity"].shape == (1, 24, 40)
    assert 0.0 <= float(s["image"].min()) and float(s["image"].max()) <= 1.0
    # d = 2 + k + x / 8 (k = 0 for the first Things pair), rows flipped back from bottom-up PFM
    expected = 2.0 + torch.arange(40, dtype=torch.float32) / 8.0
    assert torch.allclose(s["disparity"][0, 5], expected)


def test_kitti2015_fixture_occ_noc_and_splits():
    root = str(DATA / "kitti2015" / "data_scene_flow")
    ds = KITTIStereo(root, year=2015, split="train")
    assert len(ds) == 6
    assert len(KITTIStereo(root, 2015, "subval")) == 5 and len(KITTIStereo(root, 2015, "subtrain")) == 1
    s = ds[1]
    d = s["disparity"][0]
    assert d.shape == (20, 50)  # frames differ in size
    assert torch.isinf(d[:4]).all()  # v = 0 -> +inf
    assert torch.allclose(d[10, 16], torch.tensor(10.0 + 1 + 1.0), atol=1 / 256)
    occ = s["occlusion"][0]
    assert occ[4:, :4].all() and not occ[4:, 4:].any() and not occ[:4].any()
    test = KITTIStereo(root, 2015, "test")
    assert len(test) == 1 and torch.isinf(test[0]["disparity"]).all()
    noc = KITTIStereo(root, 2015, "train", gt="noc")[0]["disparity"][0]
    assert torch.isinf(noc[:, :4]).all()


def test_kitti2012_fixture():
    ds = KITTIStereo(str(DATA / "kitti2012" / "data_stereo_flow"), year=2012)
    s = ds[1]
    assert len(ds) == 2 and torch.allclose(_finite(s["disparity"]), torch.tensor(6.5))
    assert s["occlusion"][0, :-2, :3].all()


def test_eth3d_fixture_and_subval():
    ds = ETH3DStereo(str(DATA / "eth3d"))
    assert [p[0] for p in ds.pairs] == ["eth3d/delivery_area_3s", "eth3d/terrace_1s"]
    assert len(ETH3DStereo(str(DATA / "eth3d"), "subval")) == 1
    s = ds[1]
    assert torch.isinf(s["disparity"][0, :, -5:]).all()
    assert torch.allclose(_finite(s["disparity"]), torch.tensor(5.0))
    assert s["occlusion"][0, :, :2].all() and not s["occlusion"][0, :, 2:].any()


def test_middlebury_fixtures():
    m14 = MiddleburyStereo(str(DATA / "middlebury2014"), version="2014")
    assert len(m14) == 6  # im1, im1E, im1L x 2 scenes
    assert len(MiddleburyStereo(str(DATA / "middlebury2014"), "2014", "subval")) == 3
    s = m14[0]
    assert torch.isinf(s["disparity"][0, 0]).all() and float(_finite(s["disparity"]).max()) == 30.0
    ev = MiddleburyStereo(str(DATA / "middeval3"), version="eval3", size="H")
    assert len(ev) == 2 and ev[1]["occlusion"][0, :-1, -3:].all()
    assert len(MiddleburyStereo(str(DATA / "middeval3"), "eval3", "test", size="H")) == 1
    m06 = MiddleburyStereo(str(DATA / "middlebury2006"), version="2006", size="half")
    assert len(m06) == 2 and m06.pairs[1][0].endswith("Illum1/Exp0")
    d = m06[0]["disparity"][0]
    assert torch.isinf(d[:, :3]).all() and torch.allclose(_finite(d), torch.tensor(30.0))


def test_missing_and_bad_layouts_name_the_path(tmp_path):
    with pytest.raises(FileNotFoundError, match="training"):
        KITTIStereo(str(tmp_path), 2015)
    (tmp_path / "flyingthings3d").mkdir()
    with pytest.raises(DatasetFormatError, match="no stereo pairs"):
        SceneFlowStereo(str(tmp_path))
    with pytest.raises(ValueError, match="version"):
        MiddleburyStereo(str(tmp_path), version="2004")



def test_middlebury2006_refuses_16bit_disparity(tmp_path):
    """A 16-bit disp1.png read as 8-bit Middlebury disparities would be off by ~256x: the sample names the file."""
    import shutil

    from vitlab.core.data.io import write_png16

    root = tmp_path / "m06"
    shutil.copytree(DATA / "middlebury2006", root)
    write_png16(root / "Aloe" / "disp1.png", np.full((14, 26), 60 * 256, np.uint16))
    ds = MiddleburyStereo(str(root), version="2006", size="half")
    with pytest.raises(DatasetFormatError, match=r"Aloe/disp1\.png: Middlebury disparity image \(8-bit greyscale, "
                                                 r"v = disparity x 2.* is stored as a 16-bit greyscale PNG"):
        ds[0]
    assert torch.allclose(_finite(ds[1]["disparity"]), torch.tensor(30.0))  # the untouched scene still reads


def test_occlusion_mask_values_are_checked(tmp_path):
    import shutil

    from PIL import Image

    root = tmp_path / "ev3"
    shutil.copytree(DATA / "middeval3", root)
    mask = root / "trainingH" / "Vintage" / "mask0nocc.png"
    m = np.asarray(Image.open(mask)).copy()
    m[0, 0] = 1
    Image.fromarray(m).save(mask)
    ds = MiddleburyStereo(str(root), version="eval3", size="H")
    with pytest.raises(DatasetFormatError, match=r"Vintage/mask0nocc\.png: occlusion mask .* has value 1, "
                                                 r"expected one of 0, 128, 255$"):
        ds[1]


# ------------------------------------------------------------------------------------------ real samples
def test_real_sceneflow(shared_data):
    ds = SceneFlowStereo(str(shared_data / "sceneflow"), split="train")
    assert len(ds) == 1
    s = ds[0]
    d = s["disparity"]
    assert s["image"].shape == (3, 540, 960) and d.shape == (1, 540, 960)
    assert torch.isfinite(d).all()  # dense
    assert 1.0 < float(d.min()) < 1.5 and 150.0 < float(d.max()) < 153.0


def test_real_kitti(shared_data):
    k15 = KITTIStereo(str(shared_data / "kitti2015" / "data_scene_flow"), 2015)[0]
    d = k15["disparity"]
    assert k15["image"].shape == (3, 375, 1242)
    frac = float(torch.isfinite(d).float().mean())
    assert abs(frac - 0.191) < 0.01
    assert 4.5 < float(_finite(d).min()) < 4.7 and 64.0 < float(_finite(d).max()) < 64.2
    k12 = KITTIStereo(str(shared_data / "kitti2012" / "data_stereo_flow"), 2012)[0]
    d = k12["disparity"]
    assert k12["image"].shape == (3, 370, 1226)
    assert abs(float(torch.isfinite(d).float().mean()) - 0.358) < 0.01
    assert 4.3 < float(_finite(d).min()) < 4.5 and 69.7 < float(_finite(d).max()) < 69.9


def test_real_eth3d_flat_layout(shared_data):
    ds = ETH3DStereo(str(shared_data / "eth3d_tum_cvc2019"))
    s = ds[0]
    d = s["disparity"]
    assert s["image"].shape == (3, 434, 713)
    assert abs(float(torch.isfinite(d).float().mean()) - 0.532) < 0.01
    assert 8.0 < float(_finite(d).min()) < 8.2 and 17.3 < float(_finite(d).max()) < 17.5


@pytest.mark.parametrize("version,folder,shape,lo,hi,valid", [
    ("2001", "middlebury2001", (288, 384), 5.0, 14.0, 0.793),
    ("2003", "middlebury2003", (375, 450), 5.5, 55.0, 0.968),
    ("v2", "middlebury_v2_eval", (288, 384), 5.0, 14.0, 0.793),
])
def test_real_middlebury_early_layouts(shared_data, version, folder, shape, lo, hi, valid):
    ds = MiddleburyStereo(str(shared_data / folder), version=version)
    assert len(ds) == 1
    s = ds[0]
    d = s["disparity"]
    assert s["image"].shape == s["right"].shape == (3, *shape) and d.shape == (1, *shape)
    assert abs(float(torch.isfinite(d).float().mean()) - valid) < 0.002
    assert float(_finite(d).min()) == lo and float(_finite(d).max()) == hi
    if version == "v2":  # nonocc.png: GT pixels outside the evaluated (non-occluded) mask are marked occluded
        occ = s["occlusion"]
        assert 0 < float(occ.float().mean()) < 0.1 and bool(torch.isfinite(d[occ]).all())


def test_middlebury_early_layouts_scales_and_errors(tmp_path):
    from PIL import Image

    rgb = Image.fromarray(np.full((8, 16, 3), 100, np.uint8))
    grey = np.zeros((8, 16), np.uint8)
    grey[:, 4:] = 40
    for scene, files, gt in (("venus", ("im2.ppm", "im6.ppm"), "disp2.pgm"),
                             ("tsukuba", ("scene1.row3.col3.ppm", "scene1.row3.col4.ppm"), "truedisp.row3.col3.pgm")):
        (tmp_path / "m01" / scene).mkdir(parents=True)
        for f in files:
            rgb.save(tmp_path / "m01" / scene / f)
        Image.fromarray(grey).save(tmp_path / "m01" / scene / gt)
    ds = MiddleburyStereo(str(tmp_path / "m01"), version="2001")
    assert [s["name"] for s in ds] == ["middlebury2001/tsukuba", "middlebury2001/venus"]
    assert float(_finite(ds[0]["disparity"]).max()) == 40 / 16 and float(_finite(ds[1]["disparity"]).max()) == 40 / 8
    (tmp_path / "m03" / "teddy").mkdir(parents=True)
    for f in ("im2.png", "im6.png"):
        rgb.save(tmp_path / "m03" / "teddy" / f)
    Image.fromarray(grey).save(tmp_path / "m03" / "teddy" / "disp2.png")
    assert float(_finite(MiddleburyStereo(str(tmp_path / "m03"), version="2003")[0]["disparity"]).max()) == 10.0
    assert float(_finite(MiddleburyStereo(str(tmp_path / "m03"), version="2003", size="half")[0]["disparity"]).max()) == 20
    (tmp_path / "v2" / "cones").mkdir(parents=True)
    for f in ("imL.png", "imR.png"):
        rgb.save(tmp_path / "v2" / "cones" / f)
    Image.fromarray(grey).save(tmp_path / "v2" / "cones" / "groundtruth.png")
    with pytest.raises(DatasetFormatError, match="info.txt"):
        MiddleburyStereo(str(tmp_path / "v2"), version="v2")
    (tmp_path / "v2" / "cones" / "info.txt").write_text("4\n60\n")
    assert float(_finite(MiddleburyStereo(str(tmp_path / "v2"), version="v2")[0]["disparity"]).max()) == 10.0


def test_real_middlebury2006_half(shared_data):
    ds = MiddleburyStereo(str(shared_data / "middlebury2006" / "HalfSize"), version="2006", size="half")
    s = ds[0]
    d = s["disparity"]
    assert s["image"].shape == (3, 555, 653)
    assert abs(float(torch.isfinite(d).float().mean()) - 0.981) < 0.01
    assert 21.4 < float(_finite(d).min()) < 21.6 and 108.4 < float(_finite(d).max()) < 108.6


# ------------------------------------------------------------------------------------------ mixing + augmentation
def test_datamodule_repeats_augments_and_normalises():
    sf = SceneFlowStereo(str(DATA / "sceneflow"), split="test")
    eth = ETH3DStereo(str(DATA / "eth3d"))
    dm = StereoDataModule(train_datasets=[sf, eth], train_repeats=[3, 2], crop_size=[32, 64], batch_size=2,
                          num_workers=0)
    loader = dm.train_dataloader()
    assert len(loader.dataset) == 3 * 1 + 2 * 2
    batch = dm.on_after_batch_transfer(next(iter(loader)), 0)
    assert batch["image"].shape == (2, 3, 32, 64) and batch["disparity"].shape == (2, 1, 32, 64)
    assert float(batch["image"].min()) < -0.5  # ImageNet-normalised
    with pytest.raises(ValueError, match="repeat factors"):
        StereoDataModule(train_datasets=[sf], train_repeats=[1, 2]).train_dataloader()


def _sample(h=40, w=80):
    x = torch.linspace(0, 1, w).expand(3, h, w).clone()
    d = torch.full((1, h, w), 5.0)
    d[:, :, :4] = math.inf
    return {"image": x, "right": x.clone(), "disparity": d, "name": "s"}


def test_augmentor_scales_disparity_with_x_only_and_crops():
    aug = StereoAugmentor((32, 64), scale_prob=1.0, vflip_prob=0.0, right_jitter_prob=0.0, color_one_prob=1.0,
                          asym_prob=0.0, seed=0)
    out = aug._scale(_sample())
    H, W = out["image"].shape[-2:]
    assert H == 40 and W > 80  # x-only: height unchanged
    s = W / 80
    assert torch.allclose(_finite(out["disparity"]), torch.tensor(5.0 * s), atol=1e-4)
    full = StereoAugmentor((32, 64), seed=1)
    for _ in range(5):
        o = full(_sample())
        assert o["image"].shape == (3, 32, 64) and o["right"].shape == (3, 32, 64)
        assert o["disparity"].shape == (1, 32, 64)
        assert float(o["image"].min()) >= 0 and float(o["image"].max()) <= 1
        fin = _finite(o["disparity"])
        assert ((fin >= 5.0 - 1e-4) & (fin <= 10.0 + 1e-3)).all()  # 5 px times s in [1, 2]
    with pytest.raises(ValueError, match="multiples of 32"):
        StereoAugmentor((30, 64))


def test_augmentor_vflip_and_right_jitter_are_small():
    aug = StereoAugmentor((32, 64), scale_prob=0.0, vflip_prob=1.0, right_jitter_prob=0.0, color_one_prob=1.0,
                          asym_prob=0.0, seed=0)
    s = _sample(32, 64)
    s["disparity"] = torch.arange(32, dtype=torch.float32).view(1, 32, 1).expand(1, 32, 64).clone()
    aug._sample_color = lambda: []  # noqa: E731
    o = aug(s)
    assert torch.equal(o["disparity"][0, :, 10], torch.arange(31, -1, -1, dtype=torch.float32))
    img = torch.rand(3, 32, 64)
    j = StereoAugmentor((32, 64), seed=3)._jitter_right(img)
    assert j.shape == img.shape and (j - img).abs().mean() < 0.5


def test_colour_on_device_takes_the_colour_out_of_the_workers():
    sf = SceneFlowStereo(str(DATA / "sceneflow"), split="test")
    kw = dict(train_datasets=[sf], train_repeats=[8], crop_size=[32, 64], batch_size=4, num_workers=0, seed=3)
    assert StereoDataModule(**kw)._augmentor().color
    dm = StereoDataModule(**kw, color_on_device=True)
    assert not dm._augmentor().color and dm.color_augment is not None
    raw = next(iter(dm.train_dataloader()))  # geometric augmentation only: views keep the source colours
    assert raw["image"].dtype == torch.uint8  # geometric augmentation only, sent as uint8

    class Fit:  # the trainer state the hook reads
        training = True

    dm.trainer = Fit()
    torch.manual_seed(0)
    train = dm.on_after_batch_transfer(raw, 0)
    Fit.training = False  # validation / predict batches are only normalised
    evaluated = dm.on_after_batch_transfer(raw, 0)
    changed = [not torch.allclose(train["image"][i], evaluated["image"][i]) for i in range(4)]
    assert any(changed), "the device colour augmentation changed no training image"
    assert torch.equal(train["disparity"], raw["disparity"])
    mean = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
    std = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)
    torch.testing.assert_close(evaluated["image"], (raw["image"] / 255.0 - mean) / std)
