"""GTA5 / SYNTHIA / Cityscapes readers in their real formats, the DAFormer crop, RCS and the UDA DataModule."""

from __future__ import annotations

import json
import random
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from vitlab.core.data.io import DatasetFormatError
from vitlab.uda.data import (
    SYNTHIA13_CLASSES,
    SYNTHIA_CLASSES,
    RareClassSampler,
    UDADataModule,
    UDATrainTransform,
    class_stats,
    decode_gta_label,
    decode_synthia_label,
    gta_pairs,
    synthia_pairs,
)

DATA = Path(__file__).resolve().parents[1] / "data"


def test_class_subsets():
    assert len(SYNTHIA_CLASSES) == 16 and {9, 14, 16}.isdisjoint(SYNTHIA_CLASSES)
    assert len(SYNTHIA13_CLASSES) == 13 and {3, 4, 5}.isdisjoint(SYNTHIA13_CLASSES)


def test_gta_labels_map_cityscapes_ids():
    pairs = gta_pairs(DATA / "gta5")
    assert len(pairs) == 4
    lab = decode_gta_label(pairs[2][1])
    assert lab.shape == (96, 160) and lab.dtype == np.int64
    assert lab[0, 0] == 10  # sky (id 23)
    assert lab[-1, 10] == 0  # road (7)
    assert lab[60, 120] == 15  # bus (28)
    assert lab[-1, -1] == 255  # ego vehicle (1): not a train class
    assert lab[-1, 0] == 1  # sidewalk (8)


def test_synthia_last_channel_and_map():
    pairs = synthia_pairs(DATA / "synthia")
    lab = decode_synthia_label(pairs[0][1])
    assert lab.shape == (95, 160)
    assert lab[0, 0] == 255  # void (0)
    assert lab[10, 100] == 10  # SYNTHIA sky (1) -> 10; the first channel holds unrelated ids
    assert lab[-1, 100] == 0  # road (3)
    assert lab[40, 100] == 2  # building (2)
    assert lab[50, 145] == 11  # pedestrian (10) -> person
    assert set(np.unique(lab).tolist()) <= set(SYNTHIA_CLASSES) | {255}


def test_bad_inputs_name_the_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="GTA5 images folder"):
        gta_pairs(tmp_path)
    shutil.copytree(DATA / "gta5" / "images", tmp_path / "RGB")
    (tmp_path / "GT" / "LABELS").mkdir(parents=True)
    bad = tmp_path / "GT" / "LABELS" / "00001.png"
    shutil.copy(DATA / "gta5" / "labels" / "00001.png", bad)  # an 8-bit palette PNG is not a SYNTHIA label
    with pytest.raises(DatasetFormatError, match="00001.png.*16-bit multi-channel"):
        decode_synthia_label(bad)
    with pytest.raises(DatasetFormatError, match="no label"):
        synthia_pairs(tmp_path)


def test_crop_cat_max_ratio_redraws():
    random.seed(0)
    lab = torch.zeros(40, 40, dtype=torch.int64)
    lab[:, 30:] = 1  # a 10-px crop holds both classes only for 9 of 31 left offsets (p = 0.29)
    sample = {"image": torch.rand(3, 40, 40), "semantic": lab}

    def mixed(ratio: float) -> int:
        t = UDATrainTransform(crop_size=10, cat_max_ratio=ratio, flip_prob=0.0)
        outs = [t(sample) for _ in range(100)]
        assert all(o["image"].shape == (3, 10, 10) for o in outs)
        return sum(int(o["semantic"].unique().numel() == 2) for o in outs)

    assert mixed(0.75) > 85  # up to 11 crops: 1 - 0.71 ** 11 = 0.98
    assert mixed(1.0) < 50  # one try


def test_class_stats_cached_and_rcs(tmp_path):
    root = tmp_path / "gta5"
    shutil.copytree(DATA / "gta5", root)
    pairs = gta_pairs(root)
    stats = class_stats(pairs, decode_gta_label, root)
    cached = json.loads((root / "sample_class_stats.json").read_text())
    assert [{k: v for k, v in c.items() if k not in ("size", "mtime_ns", "sha1")} for c in cached] == stats
    assert cached[2]["file"] == "labels/00003.png"
    assert cached[2]["15"] == 30 * 50  # the bus
    rcs = RareClassSampler(stats, temperature=0.01, min_pixels=1000)
    assert 15 in rcs.classes and rcs.samples_with_class[15] == [2]
    # the rarest class present (bus, 1500 px of 61440) gets nearly all the probability at T = 0.01
    assert rcs.probs[rcs.classes.index(15)] > 0.5
    rng = random.Random(0)
    draws = [rcs.sample(rng) for _ in range(50)]
    assert all(i in rcs.samples_with_class[c] for c, i in draws)


def test_datamodule_batches():
    dm = UDADataModule("gta5", str(DATA / "gta5"), str(DATA / "cityscapes"), crop_size=64, source_scale=(160, 96),
                       target_scale=(128, 64), rcs_min_pixels=1000, batch_size=2, num_workers=0)
    dm.setup("fit")
    batch = next(iter(dm.train_dataloader()))
    assert batch["source"]["image"].shape == (2, 3, 64, 64) and batch["source"]["semantic"].shape == (2, 64, 64)
    assert set(batch["target"]) == {"image"}  # target labels are never loaded for training
    assert batch["target"]["image"].shape == (2, 3, 64, 64)
    norm = dm.on_after_batch_transfer(batch, 0)
    assert norm["source"]["image"].min() < 0  # ImageNet-normalised
    val = next(iter(dm.val_dataloader()))
    assert val["image"].shape[-2:] == (64, 128) and val["semantic"].max() <= 255
    assert dm.eval_classes == tuple(range(19))


def test_crop_and_rcs_draw_at_most_eleven_crops(monkeypatch):
    """mmseg ``RandomCrop`` and DAFormer's RCS loop both check a crop, then re-draw it up to 10 times: 11 crops
    at most (``uda_dataset.py`` ``for j in range(10)`` after the first crop, the last one kept unchecked)."""
    from vitlab.uda.datasets import SourceTargetDataset

    calls = []
    real = random.randint
    monkeypatch.setattr(random, "randint", lambda a, b: calls.append(1) or real(a, b))
    one_class = {"image": torch.rand(3, 20, 20), "semantic": torch.zeros(20, 20, dtype=torch.int64)}
    UDATrainTransform(crop_size=10, cat_max_ratio=0.75, flip_prob=0.0)(one_class)  # never passes the check
    assert len(calls) == 2 * 11  # (top, left) per crop

    class Source:
        n = 0

        def __len__(self):
            return 1

        def __getitem__(self, i):
            Source.n += 1
            return {"image": torch.zeros(3, 4, 4), "semantic": torch.zeros(4, 4, dtype=torch.int64)}

    class RCS:
        min_crop_pixels = 1.0

        def sample(self, rng):
            return 5, 0  # class 5 is never in the crop

    target = next((DATA / "cityscapes" / "leftImg8bit" / "train").rglob("*.png"))
    ds = SourceTargetDataset(Source(), [target], UDATrainTransform(crop_size=8, cat_max_ratio=1.0), RCS())
    ds[0]
    assert Source.n == 11
