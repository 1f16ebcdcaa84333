"""SyntheticScenes: label/geometry consistency, exact stereo, domains, reproducibility and the DataModule."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from vitlab.core.data import (
    CLASS_NAMES,
    MODALITIES,
    NUM_CLASSES,
    NUM_PARTS,
    SyntheticScenes,
    SyntheticScenesDataModule,
)
from vitlab.core.data.constants import IMAGENET_MEAN, IMAGENET_STD

H, W = 64, 96


@pytest.fixture(scope="module")
def ds() -> SyntheticScenes:
    return SyntheticScenes(num_samples=50, size=(H, W), seed=3)


@pytest.fixture(scope="module")
def samples(ds) -> list[dict[str, np.ndarray]]:
    return [{k: v.numpy() for k, v in ds[i].items()} for i in range(8)]


def boundary(*labels: np.ndarray) -> np.ndarray:
    """Pixels whose 4-neighbour differs in any of the label maps (independent reference for ``edges``)."""
    out = np.zeros(labels[0].shape, bool)
    for lab in labels:
        dx = lab[:, 1:] != lab[:, :-1]
        dy = lab[1:] != lab[:-1]
        out[:, 1:] |= dx
        out[:, :-1] |= dx
        out[1:] |= dy
        out[:-1] |= dy
    return out


def right_at_left(s: dict[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """Right image linearly sampled at ``x - d`` for every left pixel, and where that lies inside the image."""
    d = s["disparity"][0]
    xs = np.arange(d.shape[1])[None, :] - d
    x0 = np.floor(xs).astype(int)
    inside = (x0 >= 0) & (x0 + 1 < d.shape[1])
    x0 = np.clip(x0, 0, d.shape[1] - 2)
    wgt = xs - x0
    rows = np.arange(d.shape[0])[:, None]
    right = s["right"]
    return right[:, rows, x0] * (1 - wgt) + right[:, rows, x0 + 1] * wgt, inside


def test_shapes_dtypes_and_ranges(samples, ds):
    expected = {
        "image": ((3, H, W), np.float32),
        "right": ((3, H, W), np.float32),
        "disparity": ((1, H, W), np.float32),
        "depth": ((1, H, W), np.float32),
        "semantic": ((H, W), np.int64),
        "parts": ((H, W), np.int64),
        "instance": ((H, W), np.int64),
        "saliency": ((1, H, W), np.float32),
        "edges": ((1, H, W), np.float32),
        "normals": ((3, H, W), np.float32),
        "occlusion": ((1, H, W), np.bool_),
        "label": ((), np.int64),
        "domain": ((), np.int64),
        "index": ((), np.int64),
    }
    assert set(samples[0]) == set(expected) == {*MODALITIES, "index"}
    for i, s in enumerate(samples):
        for key, (shape, dtype) in expected.items():
            assert s[key].shape == shape and s[key].dtype == dtype, key
        for key in ("image", "right"):
            assert 0.0 <= s[key].min() and s[key].max() <= 1.0
            assert s[key].std() > 0.08, "images must be textured"
        assert 0 < s["disparity"].min() and s["disparity"].max() <= ds.max_disparity + 1e-4
        assert np.isfinite(s["depth"]).all()
        assert 0 <= s["semantic"].min() and s["semantic"].max() < NUM_CLASSES
        assert set(np.unique(s["parts"])) <= set(range(NUM_PARTS))
        assert s["label"] == s["label"].clip(0, NUM_CLASSES - 3)
        assert s["domain"] == 0 and s["index"] == i
        np.testing.assert_allclose(np.linalg.norm(s["normals"], axis=0), 1.0, atol=1e-5)
        assert (s["normals"][2] < 0).all(), "normals face the camera"
        fg = s["semantic"] >= 2
        np.testing.assert_array_equal(s["saliency"][0], fg.astype(np.float32))
        np.testing.assert_array_equal(s["parts"] > 0, fg)
        np.testing.assert_array_equal(s["instance"] > 0, fg)
        np.testing.assert_array_equal(
            s["edges"][0], boundary(s["semantic"], s["instance"]).astype(np.float32)
        )
    assert len(CLASS_NAMES) == NUM_CLASSES == ds.num_classes and ds.num_parts == NUM_PARTS
    # every class shows up over a few scenes, ground at the bottom, wall at the top
    assert set(np.unique(np.stack([s["semantic"] for s in samples]))) == set(range(NUM_CLASSES))
    assert all((s["semantic"][-1] != 1).all() for s in samples)
    assert all((s["semantic"][0] != 0).all() for s in samples)


def test_subset_of_modalities_and_index_key():
    ds = SyntheticScenes(num_samples=4, size=32, modalities=["depth", "label"])
    s = ds[-1]
    assert set(s) == {"depth", "label", "index"} and s["index"] == 3
    with pytest.raises(IndexError):
        ds[4]


def test_reproducible_from_seed_and_index():
    a = SyntheticScenes(num_samples=10, size=(H, W), seed=7)
    b = SyntheticScenes(num_samples=10, size=(H, W), seed=7)
    for key, value in a[4].items():
        assert torch.equal(value, b[4][key]), key
    assert not torch.equal(a[4]["image"], a[5]["image"])
    assert not torch.equal(a[4]["semantic"], a[5]["semantic"])
    c = SyntheticScenes(num_samples=10, size=(H, W), seed=8)
    assert not torch.equal(a[4]["disparity"], c[4]["disparity"])


def test_stereo_pair_is_consistent(samples, ds):
    for s in samples:
        warped, inside = right_at_left(s)
        visible = inside & ~s["occlusion"][0]
        err = np.abs(warped - s["image"]).mean(0)[visible]
        zero_disp = np.abs(s["right"] - s["image"]).mean(0)[visible]
        assert np.median(err) < 0.01
        assert np.median(err) < 0.1 * np.median(zero_disp)
        np.testing.assert_allclose(s["disparity"] * s["depth"], ds.focal * ds.baseline, rtol=1e-5)


def test_occlusion_marks_hidden_pixels(samples):
    fractions, err_occ, err_vis = [], [], []
    for s in samples:
        occ = s["occlusion"][0]
        fractions.append(occ.mean())
        # the left strip that leaves the right image is occluded by definition
        assert occ[s["disparity"][0] > np.arange(W)[None, :] + 0.5].all()
        warped, inside = right_at_left(s)
        err = np.abs(warped - s["image"]).mean(0)
        err_occ.append(err[occ & inside])
        err_vis.append(err[~occ & inside])
    assert 0.01 < np.mean(fractions) < 0.3
    # pixels flagged occluded really see another surface in the right view
    assert np.median(np.concatenate(err_occ)) > 5 * np.median(np.concatenate(err_vis))


def test_normals_match_backprojected_geometry(samples, ds):
    for s in samples:
        z = s["depth"][0].astype(np.float64)
        v, u = np.mgrid[0:H, 0:W]
        pts = np.stack([(u - ds.cx) * z / ds.focal, (v - ds.cy) * z / ds.focal, z])
        tx = pts[:, 1:-1, 2:] - pts[:, 1:-1, :-2]
        ty = pts[:, 2:, 1:-1] - pts[:, :-2, 1:-1]
        n = np.cross(ty, tx, axis=0)
        n /= np.linalg.norm(n, axis=0, keepdims=True)
        interior = ~boundary(s["semantic"], s["instance"])[1:-1, 1:-1]  # all 4 neighbours on the same plane
        cos = np.abs((n * s["normals"][:, 1:-1, 1:-1]).sum(0))[interior]
        assert cos.min() > 0.999
        ground = s["semantic"][-1] == 0
        assert (s["normals"][1, -1][ground] < -0.5).all(), "the ground faces up (y points down)"


def test_objects_have_two_visible_parts(samples):
    split = []
    for s in samples:
        for inst in np.unique(s["instance"][s["instance"] > 0]):
            parts = s["parts"][s["instance"] == inst]
            if parts.size >= 40:
                split.append(set(np.unique(parts)) == {1, 2})
                # the halves are painted differently so that parts are learnable from the image
                img = s["image"][:, s["instance"] == inst]
                if split[-1] and min((parts == 1).sum(), (parts == 2).sum()) >= 10:
                    gap = np.abs(img[:, parts == 1].mean(1) - img[:, parts == 2].mean(1)).max()
                    assert gap > 0.01
    assert len(split) >= 10 and np.mean(split) > 0.8


def test_label_is_family_of_largest_visible_object(samples):
    for s in samples:
        ids, counts = np.unique(s["instance"][s["instance"] > 0], return_counts=True)
        largest = ids[np.argmax(counts)]
        family = s["semantic"][s["instance"] == largest][0] - 2
        assert s["label"] == family
    assert len({int(s["label"]) for s in samples}) > 1


def test_target_domain_changes_appearance_not_geometry():
    src = SyntheticScenes(num_samples=8, size=(H, W), seed=1, domain="source")
    tgt = SyntheticScenes(num_samples=8, size=(H, W), seed=1, domain="target")
    mixed = SyntheticScenes(num_samples=8, size=(H, W), seed=1, domain="mixed")
    blue_minus_red = {"source": [], "target": []}
    for i in range(8):
        a, b = src[i], tgt[i]
        for key in ("semantic", "parts", "disparity", "depth", "normals", "occlusion", "label"):
            assert torch.equal(a[key], b[key]), key
        assert a["domain"] == 0 and b["domain"] == 1
        blue_minus_red["source"].append(float(a["image"][2].mean() - a["image"][0].mean()))
        blue_minus_red["target"].append(float(b["image"][2].mean() - b["image"][0].mean()))
        m = mixed[i]
        assert m["domain"] == i % 2
        assert torch.equal(m["image"], (a, b)[i % 2]["image"])
    assert np.mean(blue_minus_red["target"]) > np.mean(blue_minus_red["source"]) + 0.1
    # target images are blurred and noisy: the stereo pair is no longer pixel-identical
    s = {k: v.numpy() for k, v in tgt[0].items()}
    warped, inside = right_at_left(s)
    assert np.median(np.abs(warped - s["image"]).mean(0)[inside & ~s["occlusion"][0]]) > 0.003


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"modalities": ["image", "flow"]}, "valid names are"),
        ({"size": (64, 8)}, "`size`"),
        ({"size": 0}, "`size`"),
        ({"domain": "night"}, "`domain`"),
        ({"min_objects": 4, "max_objects": 2}, "`max_objects`"),
        ({"num_samples": 0}, "`num_samples`"),
        ({"max_disparity": 0.0}, "`max_disparity`"),
        ({"seed": -1}, "`seed`"),
    ],
)
def test_invalid_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        SyntheticScenes(**kwargs)


def test_datamodule_batches_are_normalized():
    dm = SyntheticScenesDataModule(
        modalities=["image", "right", "semantic"],
        size=32,
        batch_size=4,
        train_samples=8,
        val_samples=4,
        seed=5,
    )
    assert dm.num_classes == NUM_CLASSES and dm.num_parts == NUM_PARTS
    dm.setup("fit")
    train = dm.train_dataloader()
    assert len(train) == 2 and train.drop_last
    raw = next(iter(train))
    assert set(raw) == {"image", "right", "semantic", "index"} and raw["image"].shape == (4, 3, 32, 32)
    assert raw["image"].dtype == raw["right"].dtype == torch.uint8  # images travel as uint8
    batch = dm.on_after_batch_transfer(raw, 0)
    mean = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)
    for key in ("image", "right"):
        torch.testing.assert_close(batch[key], (raw[key] / 255.0 - mean) / std)
    assert torch.equal(batch["semantic"], raw["semantic"])
    assert next(iter(dm.val_dataloader()))["image"].shape[0] == 4
    # disjoint streams: validation scenes differ from training scenes with the same index
    assert not torch.equal(dm.val_set[0]["image"], dm.train_set[0]["image"])
    with pytest.raises(ValueError, match="train_samples"):
        SyntheticScenesDataModule(batch_size=8, train_samples=4)


@pytest.mark.filterwarnings("ignore:.*validation_step.*", "ignore:.*LeafSpec.*")
def test_datamodule_combined_source_target_in_trainer():
    import lightning.pytorch as pl

    dm = SyntheticScenesDataModule(
        modalities=["image", "domain"],
        size=32,
        batch_size=2,
        train_samples=4,
        val_samples=2,
        target_domain="target",
    )

    class Probe(pl.LightningModule):
        def __init__(self) -> None:
            super().__init__()
            self.w = torch.nn.Parameter(torch.zeros(()))
            self.seen: list[dict] = []

        def training_step(self, batch, batch_idx):
            self.seen.append(batch)
            return (self.w - batch["source"]["image"].mean() - batch["target"]["image"].mean()) ** 2

        def configure_optimizers(self):
            return torch.optim.SGD(self.parameters(), lr=0.1)

    probe = Probe()
    trainer = pl.Trainer(
        max_epochs=1,
        limit_val_batches=0,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        accelerator="cpu",
    )
    trainer.fit(probe, datamodule=dm)
    assert len(probe.seen) == 2
    batch = probe.seen[0]
    assert set(batch) == {"source", "target"}
    assert (batch["source"]["domain"] == 0).all() and (batch["target"]["domain"] == 1).all()
    assert batch["source"]["image"].min() < -0.5, "images arrive normalised through the datamodule hook"
    assert dm.val_set.domain == "target"
