"""Image pairs from glob patterns or a two-column text file: pairing, shared crop window, clear errors."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from vitlab.core.data import DatasetFormatError, ImagePairDataModule, ImagePairs, list_image_pairs


def _write(folder, n=3, size=(40, 56), grey_right=False):
    rng = np.random.default_rng(0)
    for i in range(n):
        a = rng.integers(0, 255, (*size, 3), dtype=np.uint8)
        Image.fromarray(a).save(folder / f"{i:02d}_L.png")
        b = Image.fromarray(a).convert("L") if grey_right else Image.fromarray(a)
        b.save(folder / f"{i:02d}_R.png")


def test_globs_and_pairs_file_give_the_same_pairs(tmp_path):
    _write(tmp_path)
    by_glob = list_image_pairs(str(tmp_path / "*_L.png"), str(tmp_path / "*_R.png"))
    assert [(a.name, b.name) for a, b in by_glob] == [(f"{i:02d}_L.png", f"{i:02d}_R.png") for i in range(3)]
    (tmp_path / "pairs.txt").write_text("# first second\n" + "".join(f"{i:02d}_L.png {i:02d}_R.png\n" for i in range(3)))
    assert list_image_pairs(pairs_file=str(tmp_path / "pairs.txt")) == by_glob  # relative to the file's folder


def test_one_crop_window_for_both_views_and_grey_input(tmp_path):
    _write(tmp_path, n=2, grey_right=True)
    pairs = list_image_pairs(str(tmp_path / "*_L.png"), str(tmp_path / "*_R.png"))
    ds = ImagePairs(pairs, size=[32, 48], train=True, color_jitter=None)
    torch.manual_seed(0)
    s = ds[1]
    assert s["image"].shape == s["right"].shape == (3, 32, 48)
    grey = s["image"].new_tensor([0.299, 0.587, 0.114]) @ s["image"].reshape(3, -1)
    assert torch.allclose(s["right"][0].reshape(-1), grey, atol=2 / 255)  # same window
    jittered = ImagePairs(pairs, size=32, train=True)[0]
    assert jittered["image"].shape == (3, 32, 32)
    small = ImagePairs(pairs, size=64, train=False)[0]  # smaller than the crop: scaled up, centre window
    assert small["image"].shape == small["right"].shape == (3, 64, 64)


def test_errors_name_the_file(tmp_path):
    _write(tmp_path, n=2)
    (tmp_path / "extra_R.png").write_bytes((tmp_path / "00_R.png").read_bytes())
    with pytest.raises(DatasetFormatError, match="matches 2 files but right pattern .* matches 3"):
        list_image_pairs(str(tmp_path / "*_L.png"), str(tmp_path / "*_R.png"))
    with pytest.raises(FileNotFoundError, match="nothing_.*matches no file"):
        list_image_pairs(str(tmp_path / "nothing_*.png"), str(tmp_path / "*_R.png"))
    bad = tmp_path / "bad.txt"
    bad.write_text("00_L.png 00_R.png\n01_L.png\n")
    with pytest.raises(DatasetFormatError, match=r"bad\.txt:2: expected 2 columns"):
        list_image_pairs(pairs_file=str(bad))
    bad.write_text("00_L.png missing.png\n")
    with pytest.raises(FileNotFoundError, match=r"bad\.txt:1: image .*missing\.png not found"):
        list_image_pairs(pairs_file=str(bad))
    with pytest.raises(ValueError, match="either pairs_file or left"):
        list_image_pairs(str(tmp_path / "*_L.png"), None, str(bad))


def test_datamodule_batches(tmp_path):
    _write(tmp_path, n=4)
    dm = ImagePairDataModule(left=str(tmp_path / "*_L.png"), right=str(tmp_path / "*_R.png"), size=32,
                             batch_size=2, num_workers=0, val_pairs_file=None)
    dm.setup("fit")
    batch = next(iter(dm.train_dataloader()))
    assert batch["image"].shape == batch["right"].shape == (2, 3, 32, 32)
    assert dm.val_dataloader() == []
