"""SyntheticStereo: exact correspondence, no monocular cue to disparity, disparity range, determinism, errors.

The decorrelation thresholds are 0.1 in |Pearson r|, pooled over 160 pairs of 32x64 (~330k pixels, but the
effective sample is a few thousand surfaces, so the sampling std of r is ~0.02-0.03): a cue the network
could exploit shows up far above that, and SyntheticScenes, which has one (the image row), is checked
against the same statistic to show the test can fail.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from vitlab.core.data import SyntheticScenes, SyntheticStereo, SyntheticStereoDataModule

H, W = 32, 64
N_STATS = 160
CUE_THRESHOLD = 0.1


def right_at_left(s: dict[str, np.ndarray], extra: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
    """Right image linearly sampled at ``x - (d + extra)`` for every left pixel, and where that is inside."""
    d = s["disparity"][0] + extra
    xs = np.arange(d.shape[1])[None, :] - d
    x0 = np.floor(xs).astype(int)
    inside = (x0 >= 0) & (x0 + 1 < d.shape[1])
    x0 = np.clip(x0, 0, d.shape[1] - 2)
    wgt = xs - x0
    rows = np.arange(d.shape[0])[:, None]
    right = s["right"]
    return right[:, rows, x0] * (1 - wgt) + right[:, rows, x0 + 1] * wgt, inside


@pytest.fixture(scope="module")
def stats():
    """Pixel-pooled disparity, image row and left-image brightness over N_STATS pairs, plus per-object size."""
    ds = SyntheticStereo(N_STATS, size=(H, W), seed=5, modalities=["image", "disparity", "instance"])
    disp, rows, bright, size, obj_disp = [], [], [], [], []
    for i in range(N_STATS):
        s = ds.render(i)
        d = s["disparity"][0]
        disp.append(d.ravel())
        rows.append(np.repeat(np.arange(H, dtype=np.float32), W))
        bright.append(s["image"].mean(0).ravel())
        for layer in ds.scene(i).layers[2:]:
            vis = s["instance"] == layer.instance
            if vis.any():  # projected size (silhouette scale) vs the disparity the object is seen at
                size.append(np.log(layer.radius) - 0.5 * np.log(layer.inv_aspect))
                obj_disp.append(float(np.median(d[vis])))
    cat = np.concatenate
    return dict(disp=cat(disp), rows=cat(rows), bright=cat(bright), size=np.array(size),
                obj_disp=np.array(obj_disp), max_disparity=ds.max_disparity)


def test_right_view_warps_onto_left_on_non_occluded_pixels():
    ds = SyntheticStereo(8, size=(48, 96), seed=1, photometric=False)
    for i in range(4):
        s = ds.render(i)
        assert s["disparity"].shape == (1, 48, 96) and s["occlusion"].dtype == bool
        outside = np.arange(96)[None, :] - s["disparity"][0] < -0.5
        assert s["occlusion"][0][outside].all(), "a pixel whose match leaves the right view is occluded"
        warped, inside = right_at_left(s)
        ok = ~s["occlusion"][0] & inside
        err = np.abs(warped - s["image"]).mean(0)[ok]
        wrong = np.abs(right_at_left(s, 2.0)[0] - s["image"]).mean(0)[ok & right_at_left(s, 2.0)[1]]
        # linear resampling of textures with periods >= ~3 px: ~0.01 mean; 2 px off the GT: ~0.09
        assert err.mean() < 0.03, (i, err.mean())
        assert err.mean() < 0.3 * wrong.mean(), (i, err.mean(), wrong.mean())
        assert 0.02 < s["occlusion"].mean() < 0.5


def test_photometric_changes_are_independent_per_view_and_keep_geometry():
    plain = SyntheticStereo(4, size=(H, W), seed=2, photometric=False)[1]
    photo = SyntheticStereo(4, size=(H, W), seed=2)[1]
    assert torch.equal(plain["disparity"], photo["disparity"])
    assert torch.equal(plain["occlusion"], photo["occlusion"])
    for key in ("image", "right"):
        assert not torch.allclose(plain[key], photo[key], atol=1e-3)
        assert photo[key].min() >= 0 and photo[key].max() <= 1
    # different exposure/gamma per view: the ratio of mean brightness changes between the two views
    s = {k: v.numpy() for k, v in photo.items()}
    p = {k: v.numpy() for k, v in plain.items()}
    ratio_left = s["image"].mean() / p["image"].mean()
    ratio_right = s["right"].mean() / p["right"].mean()
    assert abs(ratio_left - ratio_right) > 1e-3


def test_vertical_shift_moves_only_the_right_rows():
    base = SyntheticStereo(2, size=(H, W), seed=4, photometric=False)[0]
    shifted = SyntheticStereo(2, size=(H, W), seed=4, photometric=False, vertical_shift=2.0)[0]
    assert torch.equal(base["image"], shifted["image"]) and torch.equal(base["disparity"], shifted["disparity"])
    assert not torch.allclose(base["right"], shifted["right"])


def test_monocular_cues_are_decorrelated_from_disparity(stats):
    d = stats["disp"]
    r_row = np.corrcoef(stats["rows"], d)[0, 1]
    r_bright = np.corrcoef(stats["bright"], d)[0, 1]
    r_size = np.corrcoef(stats["size"], stats["obj_disp"])[0, 1]
    assert len(stats["size"]) > 800
    assert abs(r_row) < CUE_THRESHOLD, r_row
    assert abs(r_bright) < CUE_THRESHOLD, r_bright
    assert abs(r_size) < CUE_THRESHOLD, r_size
    # the same statistic flags SyntheticScenes' ground plane (disparity grows with the row)
    old = SyntheticScenes(40, size=(H, W), seed=5, modalities=["disparity"])
    od = np.concatenate([old.render(i)["disparity"][0].ravel() for i in range(40)])
    assert np.corrcoef(np.tile(np.repeat(np.arange(H), W), 40), od)[0, 1] > 0.5


def test_disparity_histogram_covers_the_range_with_a_long_tail(stats):
    d, m = stats["disp"], stats["max_disparity"]
    assert m == pytest.approx(192 * W / 512)
    assert d.min() > 0 and d.max() <= m + 1e-4
    hist = np.histogram(d, bins=8, range=(0, m))[0]
    assert (hist > 0).all(), hist  # every eighth of [0, max_disparity] is populated
    assert d.max() > 0.85 * m
    assert np.median(d) < 0.25 * m  # long tail: most pixels are far, as in FlyingThings3D
    assert (d > 0.5 * m).mean() > 0.003


def test_index_seeded_and_deterministic():
    a = SyntheticStereo(6, size=(H, W), seed=7)
    b = SyntheticStereo(6, size=(H, W), seed=7)
    for i in (0, 5, -1):
        sa, sb = a[i], b[i]
        assert all(torch.equal(sa[k], sb[k]) for k in sa)
    assert not torch.equal(a[0]["disparity"], a[1]["disparity"])
    assert not torch.equal(a[0]["image"], SyntheticStereo(6, size=(H, W), seed=8)[0]["image"])
    assert set(a[0]) == {"image", "right", "disparity", "occlusion", "index"}
    with pytest.raises(IndexError, match="SyntheticStereo"):
        a[6]


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(modalities=["image", "semantic"]), "modalities"),
        (dict(modalities=[]), "modalities"),
        (dict(max_objects=41), "max_objects"),
        (dict(min_objects=5, max_objects=3), "max_objects"),
        (dict(max_disparity=40.0), "max_disparity"),
        (dict(photometric="yes"), "photometric"),
        (dict(vertical_shift=-1.0), "vertical_shift"),
        (dict(size=8), "size"),
    ],
)
def test_bad_arguments_name_the_key(kwargs, match):
    with pytest.raises(ValueError, match=match):
        SyntheticStereo(4, **{"size": (H, W), **kwargs})


def test_datamodule_batches_match_the_stereo_tasks_contract():
    dm = SyntheticStereoDataModule(size=(H, W), batch_size=2, train_samples=4, val_samples=2)
    assert dm.max_disparity == pytest.approx(24.0)
    dm.setup("fit")
    batch = next(iter(dm.train_dataloader()))
    assert batch["image"].shape == (2, 3, H, W) and batch["disparity"].shape == (2, 1, H, W)
    assert batch["occlusion"].dtype == torch.bool
    normed = dm.on_after_batch_transfer(batch, 0)
    assert normed["image"].min() < 0  # ImageNet-normalised
    val = dm.val_set.render(0)["disparity"]
    assert not np.array_equal(val, dm.train_set.render(0)["disparity"])  # disjoint scene streams
    with pytest.raises(ValueError, match="train_samples"):
        SyntheticStereoDataModule(size=(H, W), batch_size=8, train_samples=4)
