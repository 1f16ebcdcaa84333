"""RGB + 16-bit pseudo-depth folders (MultiMAE layout) for SG-MIM."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from vitlab.core.data.io import DatasetFormatError, write_png16
from vitlab.pretrain import SGMIM, BlockRandomMask, PseudoDepthFolderDataModule, PseudoDepthFolderDataset


def _make(root, n=3, size=(40, 48)):
    rng = np.random.default_rng(0)
    for c in ("cat", "dog"):
        for k in range(n):
            rgb = rng.integers(0, 256, (*size, 3), dtype=np.uint8)
            (root / "train" / "rgb" / c).mkdir(parents=True, exist_ok=True)
            Image.fromarray(rgb).save(root / "train" / "rgb" / c / f"img{k}.jpg")
            depth = np.tile(np.arange(size[1], dtype=np.uint16) * 1000, (size[0], 1))
            write_png16(root / "train" / "depth" / c / f"img{k}.png", depth)


def test_reader_values_and_joint_augmentation(tmp_path):
    _make(tmp_path)
    ds = PseudoDepthFolderDataset(tmp_path, "train", size=32, train=False)
    assert len(ds) == 6 and ds.classes == ["cat", "dog"]
    s = ds[4]
    assert s["image"].shape == (3, 32, 32) and s["depth"].shape == (1, 32, 32) and int(s["label"]) == 1
    # depth = uint16 / 2**16, a horizontal ramp: increasing along x, constant along y
    assert 0 <= float(s["depth"].min()) and float(s["depth"].max()) <= 47 * 1000 / 2**16 + 1e-4
    assert (s["depth"][0, :, 1:] >= s["depth"][0, :, :-1] - 1e-6).all()
    torch.manual_seed(0)
    tr = PseudoDepthFolderDataset(tmp_path, "train", size=32, train=True)
    flipped = 0
    for i in range(12):
        d = tr[i % 6]["depth"][0]
        assert torch.allclose(d, d[:1].expand_as(d), atol=1e-5)  # crop/resize keeps the ramp rows equal
        flipped += int(d[0, 0] > d[0, -1])
    assert 0 < flipped < 12  # the flip hits depth (and, jointly, the image) about half the time


def test_reader_errors_name_the_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="rgb"):
        PseudoDepthFolderDataset(tmp_path, "train")
    _make(tmp_path, n=1)
    (tmp_path / "train" / "depth" / "dog" / "img0.png").unlink()
    with pytest.raises(DatasetFormatError, match="img0.png"):
        PseudoDepthFolderDataset(tmp_path, "train")


def test_sgmim_trains_on_the_folder(tmp_path, tiny_vit):
    _make(tmp_path)
    dm = PseudoDepthFolderDataModule(str(tmp_path), size=32, batch_size=3, num_workers=0)
    dm.setup("fit")
    batch = dm.on_after_batch_transfer(next(iter(dm.train_dataloader())), 0)
    model = SGMIM(tiny_vit(mask_token=True), masking=BlockRandomMask(16, 0.5), depth_embed_dim=8)
    losses, _, _ = model(batch)
    losses["loss"].backward()
    assert torch.isfinite(losses["loss"]) and losses["loss_depth"] > 0
