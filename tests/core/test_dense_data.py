"""Real dense datasets: paired transforms, ADE20K / Cityscapes / NYU DataModules, format errors, real samples."""

from __future__ import annotations

import json
import random
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from lightning.pytorch import Trainer
from PIL import Image

from vitlab.core import DepthEstimation, SemanticSegmentation, ViT
from vitlab.core.data import (
    VALID_KEY,
    ADE20KDataModule,
    CityscapesDataModule,
    DenseEvalTransform,
    DenseTrainTransform,
    NYUDepthDataModule,
    PhotometricDistortion,
    dense_collate,
    hflip_sample,
    read_ade20k_full_seg,
    rescale_size,
    resize_sample,
)
from vitlab.core.data.constants import IGNORE_INDEX, IMAGENET_MEAN, IMAGENET_STD
from vitlab.core.data.io import DatasetFormatError, read_label_png

DATA = Path(__file__).resolve().parents[1] / "data"
ADE = DATA / "ade20k" / "ADEChallengeData2016"
NYU = DATA / "nyu"
CITYSCAPES = DATA / "cityscapes"
MEAN = torch.tensor(IMAGENET_MEAN).view(3, 1, 1)


# ---------------------------------------------------------------------------------------------------------------
# transforms
# ---------------------------------------------------------------------------------------------------------------


def blocks_sample(h: int = 24, w: int = 32, block: int = 4, seed: int = 0) -> dict[str, torch.Tensor]:
    """Label = random id per block; image = id / 10 in every channel, so image and label must stay aligned."""
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(0, 10, (h // block, w // block), generator=g)
    lab = ids.repeat_interleave(block, 0).repeat_interleave(block, 1)
    depth = (1.0 + lab.float())[None].clone()
    depth[:, :block, :block] = torch.inf
    return {"image": (lab.float() / 10.0)[None].repeat(3, 1, 1), "semantic": lab, "depth": depth}


def test_rescale_size_matches_hand_computed():
    assert rescale_size(375, 500, (2048, 512)) == (512, 683)  # short side -> 512
    assert rescale_size(1024, 2048, (2048, 1024), ratio=0.5) == (512, 1024)
    assert rescale_size(100, 1000, (2048, 512)) == (205, 2048)  # very wide: the long edge limits


@pytest.mark.parametrize("seed", range(6))
def test_train_transform_keeps_image_label_depth_aligned(seed):
    random.seed(seed)
    t = DenseTrainTransform(crop_size=(40, 48), scale=None, ratio_range=(0.5, 2.0), flip_prob=0.5,
                            photometric=False)
    out = t(blocks_sample(seed=seed))
    img, lab, depth = out["image"], out["semantic"], out["depth"]
    assert img.shape == (3, 40, 48) and lab.shape == (40, 48) and depth.shape == (1, 40, 48)
    assert lab.dtype == torch.int64 and depth.dtype == torch.float32
    # Block interiors (label equal to its 3x3 neighbourhood) carry image == label / 10 exactly enough.
    padded = torch.nn.functional.pad(lab[None, None].float(), (1, 1, 1, 1), mode="replicate")[0, 0]
    same = torch.ones_like(lab, dtype=torch.bool)
    for dy in range(3):
        for dx in range(3):
            same &= padded[dy : dy + 40, dx : dx + 48] == lab.float()
    interior = same & (lab != IGNORE_INDEX)
    assert interior.sum() > 50
    assert torch.allclose(img[0][interior], lab[interior].float() / 10.0, atol=0.02)
    finite = torch.isfinite(depth[0])
    assert torch.equal(depth[0][finite], 1.0 + lab[finite].float()), "depth follows the same geometry"
    # padding: label 255 exactly where depth is padded (+inf beyond the image) and the image is the mean
    pad = lab == IGNORE_INDEX
    assert torch.isinf(depth[0][pad]).all()
    assert torch.allclose(img[:, pad], MEAN.view(3, 1).expand(3, int(pad.sum())))


def test_flip_and_crop_move_maps_together():
    s = blocks_sample()
    f = hflip_sample(s)
    assert torch.equal(f["semantic"], s["semantic"].flip(-1)) and torch.equal(f["image"], s["image"].flip(-1))
    random.seed(0)
    out = DenseTrainTransform((8, 8), None, None, flip_prob=0.0, photometric=False)(s)
    # an 8x8 window of the original: find it
    lab = s["semantic"]
    hits = [(y, x) for y in range(24 - 7) for x in range(32 - 7) if torch.equal(lab[y : y + 8, x : x + 8], out["semantic"])
            and torch.equal(s["image"][:, y : y + 8, x : x + 8], out["image"])]
    assert hits


def test_padding_values_for_small_images():
    s = blocks_sample(h=12, w=16)
    random.seed(1)
    out = DenseTrainTransform((20, 24), None, None, flip_prob=0.0, photometric=False)(s)
    assert torch.equal(out["semantic"][:12, :16], s["semantic"])
    assert (out["semantic"][12:] == 255).all() and (out["semantic"][:, 16:] == 255).all()
    assert torch.isinf(out["depth"][0, 12:]).all() and torch.isinf(out["depth"][0, :, 16:]).all()
    assert torch.allclose(out["image"][:, 12:, :], MEAN.expand(3, 8, 24))
    # the mean fill is exactly 0 after ImageNet normalisation
    normed = (out["image"] - MEAN) / torch.tensor(IMAGENET_STD).view(3, 1, 1)
    assert normed[:, 12:].abs().max() < 1e-6


def test_valid_map_marks_the_pixels_padding_did_not_add():
    s = blocks_sample(h=12, w=16)
    out = DenseTrainTransform((20, 24), None, None, flip_prob=0.0, photometric=False, valid_mask=True)(s)
    valid = out[VALID_KEY]
    assert valid.dtype == torch.bool and valid.shape == (20, 24)
    assert valid[:12, :16].all() and not valid[12:].any() and not valid[:, 16:].any()
    assert VALID_KEY not in DenseTrainTransform((20, 24), None, None, photometric=False)(s)


def test_depth_nearest_resize_keeps_original_values():
    g = torch.Generator().manual_seed(0)
    values = torch.tensor([0.7, 1.5, 3.25, 9.9, float("inf")])
    depth = values[torch.randint(0, 5, (1, 30, 41), generator=g)]
    sample = {"image": torch.rand(3, 30, 41, generator=g), "depth": depth, "semantic": torch.zeros(30, 41, dtype=torch.long)}
    for size in [(13, 17), (77, 90), (30, 20)]:
        out = resize_sample(sample, size)
        assert out["depth"].shape == (1, *size) and out["semantic"].dtype == torch.int64
        assert set(out["depth"].unique().tolist()) <= set(values.tolist())
    random.seed(3)
    out = DenseTrainTransform((24, 24), (41, 30), (0.5, 2.0), photometric=True)(sample)
    assert set(out["depth"].unique().tolist()) <= set(values.tolist())


def test_photometric_changes_image_only_within_range():
    random.seed(0)
    img = torch.rand(3, 16, 16)
    outs = [PhotometricDistortion()(img) for _ in range(8)]
    assert all(o.shape == img.shape and o.min() >= 0 and o.max() <= 1 for o in outs)
    assert any(not torch.allclose(o, img) for o in outs)
    random.seed(0)
    s = blocks_sample()
    out = DenseTrainTransform((24, 32), None, None, flip_prob=0.0, photometric=True)(s)
    assert torch.equal(out["semantic"], s["semantic"]) and torch.equal(out["depth"], s["depth"])


def test_eval_transforms_and_collate():
    s = blocks_sample(h=20, w=28)
    out = DenseEvalTransform("resize_pad", size=(16, 16))(s)
    assert out["image"].shape == (3, 16, 16)
    assert (out["semantic"][11:] == 255).all() and (out["semantic"][:10] != 255).all()  # 20x28 -> 11x16 + pad
    whole = DenseEvalTransform("whole", scale=(60, 40))(s)
    assert whole["semantic"].shape == (40, 56)  # x2: the short side limits
    assert torch.equal(DenseEvalTransform("whole")(s)["semantic"], s["semantic"])
    batch = dense_collate([s, blocks_sample(h=12, w=36)], size_divisor=16)
    assert batch["image"].shape == (2, 3, 32, 48) and batch["semantic"].shape == (2, 32, 48)
    assert (batch["semantic"][1, 12:] == 255).all() and torch.isinf(batch["depth"][1, 0, :, 36:]).all()
    with pytest.raises(ValueError, match="resize_pad"):
        DenseEvalTransform("resize_pad")


# ---------------------------------------------------------------------------------------------------------------
# DataModules on fixtures
# ---------------------------------------------------------------------------------------------------------------


def test_ade20k_datamodule_batches_and_label_mapping():
    dm = ADE20KDataModule(str(ADE), size=32, batch_size=2, num_workers=0, eval_scale=(64, 32))
    assert dm.num_classes == 150
    dm.setup("fit")
    assert len(dm.train_set) == 4 and len(dm.val_set) == 2
    raw = read_label_png(dm.train_set.pairs[0][1]).astype(np.int64)
    lab = dm.train_set.load(0)["semantic"].numpy()
    assert (raw == 0).any() and (lab[raw == 0] == 255).all()  # "other" -> ignore
    assert (raw == 150).any() and np.array_equal(lab[raw > 0], raw[raw > 0] - 1)  # 1..150 -> 0..149
    loader = dm.train_dataloader()
    assert len(loader) == 2
    batch = next(iter(loader))
    assert batch["image"].shape == (2, 3, 32, 32) and batch["image"].dtype == torch.uint8  # sent as uint8
    assert batch["semantic"].shape == (2, 32, 32) and batch["semantic"].dtype == torch.int64
    vals = set(batch["semantic"].unique().tolist())
    assert vals <= set(range(150)) | {255} and len(vals - {255}) > 1
    normed = dm.on_after_batch_transfer(batch, 0)
    expect = (batch["image"] / 255.0 - torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)) / torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)
    assert torch.allclose(normed["image"], expect)
    vb = next(iter(dm.val_dataloader()))
    h, w = vb["image"].shape[-2:]
    assert vb["image"].shape[0] == 1 and h % 16 == 0 and w % 16 == 0 and min(h, w) >= 32
    # val order is deterministic, train order depends only on (seed, epoch)
    assert [p[0].name for p in dm.val_set.pairs] == sorted(p[0].name for p in dm.val_set.pairs)
    assert list(dm.train_dataloader().sampler) == list(dm.train_dataloader().sampler)


def test_photometric_on_device_jitters_training_batches_only():
    kw = dict(size=96, batch_size=2, num_workers=0, scale=(64, 32), ratio_range=None, eval_scale=(64, 32))
    dm = ADE20KDataModule(str(ADE), photometric_on_device=True, **kw)
    assert dm.train_transform.photometric is None and dm.train_transform.valid_mask
    assert dm.photometric_augment is not None
    assert ADE20KDataModule(str(ADE), photometric=False, photometric_on_device=True, **kw).photometric_augment is None
    plain = ADE20KDataModule(str(ADE), photometric=False, **kw)  # the same geometry draws, never jittered
    dm.setup("fit"), plain.setup("fit")
    random.seed(0)
    raw = next(iter(dm.train_dataloader()))
    random.seed(0)
    ref = next(iter(plain.train_dataloader()))
    assert torch.equal(raw["image"], ref["image"]) and torch.equal(raw["semantic"], ref["semantic"])
    valid = raw[VALID_KEY]  # 96 px crops of images with a 32 px short side: every sample is padded
    assert valid.dtype == torch.bool and (~valid).any() and valid.any()

    class Fit:  # the trainer state the hook reads
        training = True

    dm.trainer = Fit()
    torch.manual_seed(0)
    train = dm.on_after_batch_transfer(raw, 0)
    assert VALID_KEY not in train and torch.equal(train["semantic"], raw["semantic"])
    Fit.training = False  # validation / test / predict batches are only normalised
    evaluated = dm.on_after_batch_transfer(raw, 0)
    normed = plain.on_after_batch_transfer(ref, 0)
    assert VALID_KEY not in evaluated and torch.equal(evaluated["image"], normed["image"])
    inside = valid[:, None].expand_as(raw["image"])
    assert not torch.allclose(train["image"][inside], normed["image"][inside])
    assert torch.equal(train["image"][~inside], normed["image"][~inside])  # padding keeps the mean fill
    assert normed["image"][~inside].abs().max() < 0.5 / 255 / 0.224  # ~0: the mean, rounded to 8 bits


def test_cityscapes_datamodule_on_fixture():
    dm = CityscapesDataModule(str(CITYSCAPES), size=(16, 32), batch_size=2, num_workers=0, scale=(64, 32),
                              eval_scale=None)
    assert dm.num_classes == 19 and dm.class_names[0] == "road"
    dm.setup(None)
    batch = next(iter(dm.train_dataloader()))
    assert batch["image"].shape == (2, 3, 16, 32) and batch["semantic"].dtype == torch.int64
    assert set(batch["semantic"].unique().tolist()) <= set(range(19)) | {255}
    test = next(iter(dm.test_dataloader()))
    assert test["semantic"].shape == (1, 32, 64)
    by_ids = CityscapesDataModule(str(CITYSCAPES), label_type="labelIds", num_workers=0).dataset("val").load(0)
    assert torch.equal(by_ids["semantic"], dm.test_set.load(0)["semantic"])


def test_nyu_datamodule_folders_depth_values():
    dm = NYUDepthDataModule(str(NYU), size=(16, 24), batch_size=2, num_workers=0)
    assert dm.num_classes == 0
    dm.setup(None)
    assert len(dm.train_set) == 3 and len(dm.test_set) == 2
    d = dm.test_set.load(0)["depth"]
    assert d.shape == (1, 24, 32) and d.dtype == torch.float32
    assert torch.isinf(d[0, :, :3]).all() and torch.isinf(d[0, :2, -2:]).all()  # 0 mm and 12 m (> max_depth)
    assert d[0, 4, 10].item() == pytest.approx((1000 + 250 + 30) / 1000)
    batch = next(iter(dm.train_dataloader()))
    assert batch["image"].shape == (2, 3, 16, 24) and batch["depth"].shape == (2, 1, 16, 24)
    finite = batch["depth"][torch.isfinite(batch["depth"])]
    assert finite.numel() and finite.min() >= 1.0 and finite.max() <= 10.0
    vb = next(iter(dm.val_dataloader()))
    assert vb["depth"].shape == (2, 1, 32, 32)  # whole 24x32 frames padded to the 16-multiple, +inf fill
    assert torch.isinf(vb["depth"][:, :, 24:]).all()


def test_nyu_split_file_and_all(tmp_path):
    for folder, ext in (("images", "jpg"), ("annotations", "png")):
        (tmp_path / folder).mkdir()
        for p in sorted((NYU / folder).glob(f"*/*.{ext}")):
            shutil.copy(p, tmp_path / folder / p.name)
    (tmp_path / "train.txt").write_text("bedroom_0000\nbedroom_0002.jpg\n\n")
    dm = NYUDepthDataModule(str(tmp_path), num_workers=0, batch_size=1)
    assert [p[0].name for p in dm.pairs("train")] == ["bedroom_0000.jpg", "bedroom_0002.jpg"]
    assert len(dm.pairs("all")) == 5
    with pytest.raises(FileNotFoundError, match="split 'val'.*val.txt"):
        dm.pairs("val")
    (tmp_path / "bad.txt").write_text("nope_0001\n")
    with pytest.raises(FileNotFoundError, match="nope_0001"):
        dm.pairs("bad")


def test_errors_name_paths(tmp_path):
    missing = tmp_path / "no_such_root"
    with pytest.raises(FileNotFoundError, match="(?s)no_such_root.*images/\\{training,validation\\}"):
        ADE20KDataModule(str(missing), num_workers=0).setup("fit")
    root = tmp_path / "ade"
    shutil.copytree(ADE, root)
    with pytest.raises(FileNotFoundError, match="images/testing"):
        ADE20KDataModule(str(root), num_workers=0, val_split="testing").setup("validate")
    gone = root / "annotations" / "training" / "ADE_train_00000002.png"
    gone.unlink()
    with pytest.raises(DatasetFormatError, match="ADE_train_00000002.jpg"):
        ADE20KDataModule(str(root), num_workers=0).setup("fit")
    # a label value that ADE20K cannot hold
    Image.fromarray(np.full((40, 56), 200, np.uint8)).save(gone.with_name("ADE_train_00000002.png"))
    ds = ADE20KDataModule(str(root), num_workers=0).dataset("training")
    with pytest.raises(DatasetFormatError, match="ADE_train_00000002.png.*200"):
        ds[1]
    Image.fromarray(np.ones((10, 10), np.uint8)).save(gone)  # wrong size
    with pytest.raises(DatasetFormatError, match="ADE_train_00000002.png.*10x10.*ADE_train_00000002.jpg"):
        ds[1]
    cs = tmp_path / "cs"
    shutil.copytree(CITYSCAPES, cs)
    (cs / "gtFine/train/bochum/bochum_000000_000019_gtFine_labelTrainIds.png").unlink()
    with pytest.raises(DatasetFormatError, match="bochum_000000_000019_leftImg8bit.png"):
        CityscapesDataModule(str(cs), num_workers=0).pairs("train")
    with pytest.raises(FileNotFoundError, match="gtFine/test"):
        (cs / "leftImg8bit" / "test").mkdir()
        CityscapesDataModule(str(cs), num_workers=0).pairs("test")
    with pytest.raises(ValueError, match="fewer than batch_size"):
        NYUDepthDataModule(str(NYU), num_workers=0, batch_size=4).setup("fit")


# ---------------------------------------------------------------------------------------------------------------
# real samples
# ---------------------------------------------------------------------------------------------------------------


def test_ade20k_full_format_real_sample(shared_data):
    stem = shared_data / "ade20k/ADE20K_2021_17_01/images/ADE/training/urban/street/ADE_train_00016964"
    cls, inst = read_ade20k_full_seg(f"{stem}_seg.png")
    assert cls.shape == inst.shape == (1467, 2200) and cls.dtype == inst.dtype == np.int64
    assert cls.min() >= 0 and (cls > 0).mean() > 0.5
    objects = json.loads(Path(f"{stem}.json").read_text())["annotation"]["object"]
    whole = {o["name_ndx"] for o in objects if o["parts"]["part_level"] == 0}
    parts = {o["name_ndx"] for o in objects if o["parts"]["part_level"] == 1}
    assert set(np.unique(cls).tolist()) - {0} == whole  # e.g. 312 building, 2131 road, 2855 tree
    assert inst.max() == sum(o["parts"]["part_level"] == 0 for o in objects) == 24
    # every instance has one class; unlabelled pixels have no instance
    pairs = np.unique(inst * 65536 + cls)
    assert len(pairs) == len(np.unique(pairs // 65536)) and ((cls == 0) == (inst == 0)).all()
    pcls, _ = read_ade20k_full_seg(f"{stem}_parts_1.png")
    assert set(np.unique(pcls).tolist()) - {0} == parts
    with pytest.raises(DatasetFormatError, match="ADE20K full-format segmentation PNG .* expected 3 channels"):
        read_ade20k_full_seg(f"{stem}/instance_000_ADE_train_00016964.png")


def test_cityscapes_real_sample(shared_data):
    root = shared_data / "cityscapes_mmseg_sample"
    dm = CityscapesDataModule(str(root), num_workers=0, eval_scale=None)
    s = dm.dataset("val").load(0)
    assert s["image"].shape == (3, 128, 256) and set(s["semantic"].unique().tolist()) == {
        0, 1, 2, 4, 5, 7, 8, 10, 11, 13, 255}
    by_ids = CityscapesDataModule(str(root), num_workers=0, label_type="labelIds").dataset("val").load(0)
    # mmseg downsampled labelIds and labelTrainIds separately: they agree on >= 99 % of pixels
    assert (by_ids["semantic"] == s["semantic"]).float().mean() > 0.99
    dm.setup("validate")
    batch = next(iter(dm.val_dataloader()))
    assert batch["image"].shape == (1, 3, 128, 256)


def test_nyu_real_sample(shared_data):
    dm = NYUDepthDataModule(str(shared_data / "nyu_depth_v2_mmseg_sample"), size=(96, 128), batch_size=1,
                            num_workers=0, train_split="all", val_split="all", test_split="all")
    d = dm.dataset("all").load(0)["depth"]
    assert d.shape == (1, 120, 160)
    valid = torch.isfinite(d)
    assert 0.6 < valid.float().mean() < 0.72
    assert d[valid].min() == pytest.approx(1.485, abs=1e-3) and d[valid].max() == pytest.approx(10.0)
    dm.setup("fit")
    assert next(iter(dm.train_dataloader()))["depth"].shape == (1, 1, 96, 128)


# ---------------------------------------------------------------------------------------------------------------
# training smoke
# ---------------------------------------------------------------------------------------------------------------


def tiny_vit() -> ViT:
    torch.manual_seed(0)
    return ViT(size="tiny", embed_dim=32, depth=2, num_heads=2, img_size=32)


def fit(model, dm, tmp_path):
    trainer = Trainer(max_steps=2, accelerator="cpu", logger=False, enable_checkpointing=False,
                      enable_progress_bar=False, enable_model_summary=False, default_root_dir=tmp_path,
                      num_sanity_val_steps=0, limit_val_batches=2, val_check_interval=2)
    trainer.fit(model, datamodule=dm)
    return trainer


def test_fit_segmentation_on_ade20k_fixture(tmp_path):
    dm = ADE20KDataModule(str(ADE), size=32, batch_size=2, num_workers=0, eval_scale=(64, 32))
    model = SemanticSegmentation(backbone=tiny_vit(), num_classes=dm.num_classes, head="linear", lr=1e-3)
    trainer = fit(model, dm, tmp_path)
    assert trainer.global_step == 2
    assert torch.isfinite(trainer.callback_metrics["train/loss"]) and "val/mIoU" in trainer.callback_metrics


def test_fit_depth_on_nyu_fixture(tmp_path):
    dm = NYUDepthDataModule(str(NYU), size=(16, 32), batch_size=1, num_workers=0)
    model = DepthEstimation(backbone=tiny_vit(), head="linear", max_depth=10.0, lr=1e-3)
    trainer = fit(model, dm, tmp_path)
    assert trainer.global_step == 2 and torch.isfinite(trainer.callback_metrics["train/loss"])
    assert any(k.startswith("val/") for k in trainer.callback_metrics)


def test_cli_parses_dense_datamodule_signatures(tmp_path):
    from vitlab.core.cli import build_cli

    args = ["--data", "vitlab.core.data.CityscapesDataModule", "--data.root", str(CITYSCAPES),
            "--data.size", "[16, 32]", "--data.scale", "[64, 32]", "--data.eval_scale", "null",
            "--data.ratio_range", "[0.75, 1.5]", "--data.num_workers", "0", "--data.batch_size", "2",
            "--model", "SemanticSegmentation", "--model.num_classes", "19", "--model.head", "linear",
            "--model.backbone", "ViT", "--model.backbone.size", "tiny", "--model.backbone.depth", "2",
            "--trainer.accelerator", "cpu", "--trainer.default_root_dir", str(tmp_path)]
    cli = build_cli(args, run=False)
    dm = cli.datamodule
    assert isinstance(dm, CityscapesDataModule) and dm.size == (16, 32)
    assert dm.train_transform.ratio_range == (0.75, 1.5) and dm.eval_transform.scale is None
