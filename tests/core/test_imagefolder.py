"""ImageFolderDataModule on the tiny ImageNet-layout fixture (tests/data/imagefolder) and on broken layouts."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import torch

from vitlab.core.data.imagefolder import ImageFolderDataModule, ImageFolderDictDataset, build_eval_transform
from vitlab.core.data.io import DatasetFormatError

ROOT = Path(__file__).resolve().parents[1] / "data" / "imagefolder"


def make_dm(root=ROOT, **kw) -> ImageFolderDataModule:
    args = dict(size=32, batch_size=2, num_workers=0, pin_memory=False)
    args.update(kw)
    return ImageFolderDataModule(str(root), **args)


@pytest.mark.parametrize("mode", ["pretrain", "finetune", "linear_probe"])
def test_loaders_yield_dict_batches(mode):
    dm = make_dm(mode=mode)
    assert dm.num_classes == 2 and dm.classes == ["class_a", "class_b"]
    dm.setup("fit")
    assert len(dm.train_set) == 6 and len(dm.val_set) == 6
    batches = list(dm.train_dataloader())
    assert len(batches) == 3
    labels = []
    for b in batches:
        assert set(b) == {"image", "label"}
        assert b["image"].shape == (2, 3, 32, 32) and b["image"].dtype == torch.uint8  # workers send uint8
        b = dm.on_after_batch_transfer(b, 0)  # normalised on the device
        assert b["image"].shape == (2, 3, 32, 32) and b["image"].dtype == torch.float32
        assert b["label"].shape == (2,) and b["label"].dtype == torch.int64
        assert b["image"].min() < 0  # normalised, not in [0, 1]
        labels += b["label"].tolist()
    assert sorted(labels) == [0, 0, 0, 1, 1, 1]
    val = list(dm.val_dataloader())
    assert torch.cat([b["label"] for b in val]).tolist() == [0, 0, 0, 1, 1, 1]  # unshuffled


def test_device_normalisation_matches_worker_normalisation():
    """uint8 from workers + normalisation on the device == the fp32 worker pipeline (eval transform)."""
    on_dev, in_workers = make_dm(), make_dm(device_normalize=False)
    on_dev.setup("validate")
    in_workers.setup("validate")
    a = on_dev.on_after_batch_transfer(next(iter(on_dev.val_dataloader())), 0)
    b = in_workers.on_after_batch_transfer(next(iter(in_workers.val_dataloader())), 0)
    assert a["image"].dtype == b["image"].dtype == torch.float32
    torch.testing.assert_close(a["image"], b["image"], atol=1e-5, rtol=1e-5)


def test_eval_labels_follow_content():
    """class_a images are red-dominant and class_b blue-dominant (see make_fixtures.py)."""
    ds = ImageFolderDictDataset(ROOT, "val", build_eval_transform(16))
    for i in range(len(ds)):
        item = ds[i]
        red_minus_blue = (item["image"][0] - item["image"][2]).mean()
        assert (red_minus_blue > 0) == (item["label"] == 0)


def test_randaugment_finetune():
    pytest.importorskip("timm")
    dm = make_dm(mode="finetune", auto_augment="rand-m9-mstd0.5-inc1")
    dm.setup("fit")
    b = next(iter(dm.train_dataloader()))
    assert b["image"].shape == (2, 3, 32, 32)


def test_validate_stage_and_test_loader():
    dm = make_dm()
    dm.setup("validate")
    assert dm.train_set is None
    b = next(iter(dm.test_dataloader()))
    assert b["image"].shape == (2, 3, 32, 32)


def test_bad_arguments():
    with pytest.raises(ValueError, match="mode"):
        make_dm(mode="supervised")
    with pytest.raises(ValueError, match="auto_augment"):
        make_dm(mode="pretrain", auto_augment="rand-m9")


def test_missing_root(tmp_path):
    missing = tmp_path / "no_such_imagenet"
    dm = make_dm(missing)
    with pytest.raises(FileNotFoundError, match=r"no_such_imagenet.*root/train/<class_name>/<image files>"):
        dm.setup("fit")
    with pytest.raises(FileNotFoundError, match="no_such_imagenet"):
        _ = dm.num_classes


def test_missing_split(tmp_path):
    shutil.copytree(ROOT / "train", tmp_path / "train")
    dm = make_dm(tmp_path)
    with pytest.raises(FileNotFoundError, match=r"val.*split folder not found.*root/val/<class_name>"):
        dm.setup("fit")


def test_no_classes(tmp_path):
    (tmp_path / "train").mkdir()
    (tmp_path / "train" / "stray.JPEG").write_bytes(b"")
    with pytest.raises(DatasetFormatError, match=r"train.*no class sub-folders.*root/train/<class_name>"):
        make_dm(tmp_path).setup("fit")


def test_class_without_images(tmp_path):
    shutil.copytree(ROOT, tmp_path / "r")
    (tmp_path / "r" / "train" / "class_c").mkdir()
    (tmp_path / "r" / "train" / "class_c" / "readme.txt").write_text("not an image")
    with pytest.raises(DatasetFormatError, match=r"train.*class_c.*root/train/<class_name>"):
        make_dm(tmp_path / "r").setup("fit")


def test_split_class_mismatch(tmp_path):
    shutil.copytree(ROOT, tmp_path / "r")
    shutil.rmtree(tmp_path / "r" / "val" / "class_b")
    with pytest.raises(DatasetFormatError, match=r"val.*only in train: \['class_b'\]"):
        make_dm(tmp_path / "r").setup("fit")


def test_corrupt_image_names_path(tmp_path):
    shutil.copytree(ROOT, tmp_path / "r")
    bad = tmp_path / "r" / "val" / "class_a" / "class_a_0.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\n garbage")
    # setup's sampled check reads the first file of each split: a bad root fails before any batch
    with pytest.raises(DatasetFormatError, match=r"val split.*class_a_0\.png"):
        make_dm(tmp_path / "r").setup("validate")
    # with that check off, the reader itself names the file when the loader reaches it
    dm = make_dm(tmp_path / "r")
    dm.setup_check_samples = 0
    dm.setup("validate")
    with pytest.raises(DatasetFormatError, match="class_a_0.png"):
        next(iter(dm.val_dataloader()))


# --------------------------------------------------------------------------------------------- decode="device"
def _images(dm: ImageFolderDataModule) -> torch.Tensor:
    dm.setup("fit")
    out = []
    for loader in (dm.train_dataloader(), dm.val_dataloader()):
        for b in loader:
            b = dm.transfer_batch_to_device(b, torch.device("cpu"), 0)
            out.append(dm.on_after_batch_transfer(b, 0)["image"])
    return torch.cat(out)


@pytest.mark.parametrize("mode", ["pretrain", "finetune"])
def test_device_decode_draws_the_same_crops_as_the_workers(mode):
    """The workers read bytes and draw the boxes as RandomResizedCrop + flip do; the device decode and resize give
    the worker path's images up to interpolation/decoder rounding (train and eval)."""
    kw = dict(mode=mode, size=48, batch_size=3, num_workers=0, device_normalize=True)
    a = ImageFolderDataModule(str(ROOT), decode="workers", **kw)
    b = ImageFolderDataModule(str(ROOT), decode="device", **kw)
    a.normalize = b.normalize = False  # compare in [0, 1]
    x, y = _images(a), _images(b)
    assert x.shape == y.shape == (12, 3, 48, 48)
    d = (x - y).abs()
    assert float(d.mean()) < 0.01 and float(d.flatten().quantile(0.99)) < 0.1, (float(d.mean()), float(d.max()))
    assert float((x - y.flip(-1)).abs().mean()) > 5 * float(d.mean())  # the flips agree too


def test_device_decode_workers_send_bytes_and_a_png_still_decodes(tmp_path):
    from PIL import Image

    root = tmp_path / "ds"
    shutil.copytree(ROOT, root)
    png = root / "train" / "class_a" / "as_png.png"
    Image.open(root / "train" / "class_a" / "class_a_0.JPEG").save(png)
    dm = ImageFolderDataModule(str(root), mode="pretrain", size=32, batch_size=7, num_workers=0, decode="device")
    dm.setup("fit")
    raw = next(iter(dm.train_dataloader()))
    assert "image" not in raw and raw["encoded"][0].dtype == torch.uint8 and raw["box"].shape == (7, 4)
    out = dm.on_after_batch_transfer(dm.transfer_batch_to_device(raw, torch.device("cpu"), 0), 0)
    assert out["image"].shape == (7, 3, 32, 32) and out["image"].dtype == torch.float32 and out["image"].min() < 0


def test_device_decode_corrupt_file_names_it(tmp_path):
    root = tmp_path / "ds"
    shutil.copytree(ROOT, root)
    bad = root / "train" / "class_a" / "class_a_0.JPEG"
    bad.write_bytes(bad.read_bytes()[:40])
    dm = ImageFolderDataModule(str(root), mode="pretrain", size=32, batch_size=6, num_workers=0, decode="device")
    dm.setup_check_samples = 0  # reach the decoder itself
    dm.setup("fit")
    with pytest.raises(DatasetFormatError, match=r"class_a_0\.JPEG"):
        for b in dm.train_dataloader():
            dm.on_after_batch_transfer(dm.transfer_batch_to_device(b, torch.device("cpu"), 0), 0)


def test_device_decode_refuses_autoaugment():
    with pytest.raises(ValueError, match="decode='device'"):
        ImageFolderDataModule(str(ROOT), auto_augment="rand-m9-mstd0.5", decode="device")
