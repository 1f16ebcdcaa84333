"""Readers on the real-format fixtures (tests/data/pascal_context, tests/data/nyud_mt) and the synthetic module."""

from pathlib import Path

import numpy as np
import pytest
import torch

from vitlab.core.data import DatasetFormatError, imagenet_normalize
from vitlab.mtl.data import PASCALContextMTDataModule, SyntheticMultiTaskDataModule
from vitlab.mtl.datasets import NYUDMT, PASCALContextMT, pascal_edges
from vitlab.mtl.transforms import MultiTaskTransform

REPO = Path(__file__).resolve().parents[2]
PASCAL = REPO / "tests" / "data" / "pascal_context" / "PASCAL_MT"
NYUD = REPO / "tests" / "data" / "nyud_mt" / "NYUD_MT"
ALL = ["semseg", "human_parts", "sal", "normals", "edge"]


def test_pascal_targets():
    ds = PASCALContextMT(str(PASCAL), "train", ALL)
    assert len(ds) == 3
    s = ds[0]  # person image
    assert s["image"].shape == (3, 40, 48) and s["name"] == "2008_000002"
    assert set(s["semseg"].unique().tolist()) == {0, 1, 15, 255}
    parts = s["human_parts"]
    assert set(parts.unique().tolist()) == {0, 1, 2, 3, 4, 5, 6}
    assert (parts[:10] == 0).all() and parts[10, 30] == 1 and parts[37, 30] == 6  # head on top, foot at the bottom
    assert (ds[1]["human_parts"] == 255).all()  # no person: ignored
    assert ds[1]["semseg"][10, 10] == 20  # read from semseg/pascal-context
    sal = s["sal"][0]
    assert sal[6, 6] == 1 and sal[20, 1] == 0  # 200/255 salient, 100/255 not
    n = s["normals"]
    assert (n[:, 2] == 0).all()  # sky (not an NYU class): masked
    assert (n[:, 20].norm(dim=0) > 0.9).all()  # wall: kept
    assert (n[:, 6, 6] == 0).all()  # aeroplane (not an NYU class): masked
    assert ds[1]["normals"][:, 6, 10].norm() > 0.9  # tvmonitor: added to the valid classes
    val = PASCALContextMT(str(PASCAL), "val", ["human_parts"])
    assert (val[1]["human_parts"] == 255).all()  # no PASCAL-Part file at all


def test_pascal_edges_thin_laplacian():
    lm = np.zeros((8, 8), np.int64)
    lm[:, 4:] = 5
    e = pascal_edges(lm)
    # |Laplacian| > 0 marks columns 3 and 4; thinning keeps one column (and drops one end pixel)
    assert e[:, 4].sum() == 0 and e[1:, 3].all() and e.sum() == 7


def test_pascal_errors_name_the_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="PASCAL_MT"):
        PASCALContextMT(str(tmp_path / "nope"))
    with pytest.raises(FileNotFoundError, match="context_classes.json"):
        PASCALContextMT(str(PASCAL), "train", ["normals"], db_info=str(tmp_path))


def test_nyud_targets_and_split_check():
    ds = NYUDMT(str(NYUD), "train", ["semseg", "depth", "normals", "edge"])
    s = ds[0]
    assert s["semseg"].shape == (32, 40) and (s["semseg"][:2] == 255).all()
    assert 0 <= int(s["semseg"][2:].min()) and int(s["semseg"].max()) == 255 and int(s["semseg"][2:].max()) <= 39
    raw = np.load(NYUD / "depth" / "0001.npy")
    assert torch.equal(s["depth"][0], torch.from_numpy(raw))
    assert s["normals"].shape == (3, 32, 40) and s["edge"][0, :, 20].sum() == 32
    with pytest.raises(DatasetFormatError, match="795"):
        NYUDMT(str(NYUD), "train", split_sizes={"train": 795, "val": 654})


def test_transforms_keep_label_semantics():
    ds = PASCALContextMT(str(PASCAL), "train", ALL)
    torch.manual_seed(0)
    import random
    random.seed(0)
    for aug in ("mtinet", "invpt", "none"):
        s = MultiTaskTransform((32, 32), aug, train=True)(ds[0])
        assert s["image"].shape == (3, 32, 32) and s["semseg"].dtype == torch.int64
        assert set(s["human_parts"].unique().tolist()) <= {0, 1, 2, 3, 4, 5, 6, 255}
    flipped = MultiTaskTransform((40, 48), "mtinet", rotation=0.0, scale_range=(1.0, 1.0), flip_prob=1.0)(ds[0])
    orig = ds[0]
    assert torch.equal(flipped["semseg"], orig["semseg"].flip(-1))
    n = orig["normals"] / (orig["normals"].norm(dim=0, keepdim=True) + torch.finfo(torch.float64).eps)
    torch.testing.assert_close(flipped["normals"][0], -n[0].flip(-1))  # FixedResize renormalises, as official


def test_invpt_photometric_on_device_jitters_training_batches_only():
    kw = dict(root=str(PASCAL), tasks=["semseg"], size=32, batch_size=2, num_workers=0)
    assert PASCALContextMTDataModule(**kw, photometric_on_device=True).photometric_augment is None  # mtinet: none
    dm = PASCALContextMTDataModule(**kw, augmentation="invpt", photometric_on_device=True)
    dm.setup("fit")
    assert dm.train_set.transform.photometric is None and dm.photometric_augment is not None
    raw = next(iter(dm.train_dataloader()))

    class Fit:  # the trainer state the hook reads
        training = True

    dm.trainer = Fit()
    torch.manual_seed(0)
    train = dm.on_after_batch_transfer(dict(raw), 0)
    Fit.training = False
    evaluated = dm.on_after_batch_transfer(dict(raw), 0)
    normed = imagenet_normalize(dict(raw), keys=("image",))
    assert torch.equal(evaluated["image"], normed["image"])
    assert not torch.allclose(train["image"], normed["image"]) and torch.equal(train["semseg"], raw["semseg"])


def test_synthetic_multitask_keys():
    dm = SyntheticMultiTaskDataModule(size=32, batch_size=2, train_samples=2, val_samples=2)
    dm.setup("fit")
    batch = dm.on_after_batch_transfer(next(iter(dm.train_dataloader())), 0)
    assert {"image", "semseg", "human_parts", "sal", "edge", "normals", "depth"} <= set(batch)
    assert batch["semseg"].shape == (2, 32, 32) and batch["normals"].shape == (2, 3, 32, 32)
