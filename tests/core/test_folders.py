"""One's own segmentation folders (``vitlab.core.data.SegmentationFolder``): ids, colours, and the errors a wrong
copy gets; the same folders as UDA source and target (``vitlab.uda.UDADataModule``).

The end-to-end runs are the shipped configs ``configs/core/folder_segmentation.yaml`` and
``configs/uda/folders_daformer.yaml``, fitted on ``tests/data/segfolder`` by tests/test_shipped_configs.py.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from vitlab.core.data import (
    DatasetFormatError,
    FolderSegmentationDataModule,
    SegmentationFolder,
    decode_folder_label,
)

DATA = Path(__file__).resolve().parents[1] / "data" / "segfolder"
CLASSES = ["a", "b", "c"]


def _folder(tmp: Path, labels: dict[str, np.ndarray], images: dict[str, tuple[int, int]] | None = None,
            split: str = "train", suffix: str = "") -> Path:
    (tmp / "images" / split).mkdir(parents=True, exist_ok=True)
    (tmp / "labels" / split).mkdir(parents=True, exist_ok=True)
    for name, lab in labels.items():
        Image.fromarray(lab).save(tmp / "labels" / split / f"{name}{suffix}.png")
    for name, (h, w) in (images or {k: v.shape[:2] for k, v in labels.items()}).items():
        Image.fromarray(np.zeros((h, w, 3), np.uint8)).save(tmp / "images" / split / f"{name}.jpg")
    return tmp


def test_ids_and_ignore_index_map_to_class_ids_and_255(tmp_path):
    lab = np.array([[0, 1, 2], [7, 2, 0]], np.uint8)
    root = _folder(tmp_path, {"x": lab})
    folder = SegmentationFolder(root, CLASSES, ignore_index=7)
    ((img, gt),) = folder.pairs("train")
    assert img.name == "x.jpg" and gt.name == "x.png"
    np.testing.assert_array_equal(folder.decoder()(gt), [[0, 1, 2], [255, 2, 0]])


def test_reduce_zero_label_ignores_zero_and_shifts(tmp_path):
    root = _folder(tmp_path, {"x": np.array([[0, 1, 3]], np.uint8)})
    out = SegmentationFolder(root, CLASSES, reduce_zero_label=True).decoder()(root / "labels/train/x.png")
    np.testing.assert_array_equal(out, [[255, 0, 2]])


def test_an_id_above_the_class_list_names_the_file(tmp_path):
    root = _folder(tmp_path, {"x": np.array([[0, 5]], np.uint8)})
    with pytest.raises(DatasetFormatError, match=r"x\.png.*3 classes"):
        decode_folder_label(root / "labels/train/x.png", num_classes=3)


def test_colour_labels_through_the_palette_and_unknown_colours_refused(tmp_path):
    palette = [[128, 64, 128], [70, 70, 70], [0, 0, 142]]
    rgb = np.array([[[128, 64, 128], [0, 0, 142], [0, 0, 0]]], np.uint8)
    path = tmp_path / "c.png"
    Image.fromarray(rgb).save(path)
    out = decode_folder_label(path, num_classes=3, palette=palette, ignore_color=[0, 0, 0])
    np.testing.assert_array_equal(out, [[0, 2, 255]])
    with pytest.raises(DatasetFormatError, match=r"c\.png: colour\(s\) \[0, 0, 0\]"):
        decode_folder_label(path, num_classes=3, palette=palette)


def test_label_suffix_and_unpaired_files(tmp_path):
    root = _folder(tmp_path, {"x": np.zeros((2, 2), np.uint8)}, suffix="_mask")
    assert SegmentationFolder(root, CLASSES, label_suffix="_mask").pairs("train")[0][1].name == "x_mask.png"
    Image.fromarray(np.zeros((2, 2, 3), np.uint8)).save(root / "images/train/y.jpg")
    with pytest.raises(DatasetFormatError, match=r"1 image\(s\) without ground truth.*y\.jpg"):
        SegmentationFolder(root, CLASSES, label_suffix="_mask").pairs("train")


def test_class_list_from_classes_txt_or_an_error_naming_it(tmp_path):
    root = _folder(tmp_path, {"x": np.zeros((2, 2), np.uint8)})
    with pytest.raises(DatasetFormatError, match=r"classes\.txt"):
        SegmentationFolder(root)
    (root / "classes.txt").write_text("road\ncar\n\n")
    assert SegmentationFolder(root).classes == ("road", "car")
    with pytest.raises(ValueError, match="one \\[r, g, b\\] per class"):
        SegmentationFolder(root, palette=[[0, 0, 0]])


def test_missing_split_folder_names_it_and_the_layout(tmp_path):
    root = _folder(tmp_path, {"x": np.zeros((2, 2), np.uint8)})
    shutil.rmtree(root / "labels" / "train")
    with pytest.raises(FileNotFoundError, match=r"(?s)labels/train: label folder.*images/<split>"):
        SegmentationFolder(root, CLASSES).pairs("train")


def test_datamodule_trains_on_the_fixture_and_names_its_classes():
    dm = FolderSegmentationDataModule(str(DATA / "source"), size=32, batch_size=2, num_workers=0, scale=(64, 48),
                                      eval_scale=(64, 48))
    dm.setup("fit")
    assert dm.num_classes == 7 and dm.class_names[:2] == ("ground", "wall")
    batch = dm.on_after_batch_transfer(next(iter(dm.train_dataloader())), 0)
    assert batch["image"].shape == (2, 3, 32, 32) and batch["semantic"].max() < 7


def test_uda_folders_source_and_target():
    from vitlab.uda import UDADataModule

    dm = UDADataModule(source="folder", source_root=str(DATA / "source"), target="folder",
                       target_root=str(DATA / "target"), crop_size=32, source_scale=(64, 48), target_scale=(64, 48),
                       batch_size=2, num_workers=0, rcs=False)
    dm.setup("fit")
    assert dm.num_classes == 7 and dm.eval_classes == tuple(range(7))
    train = dm.make_dataset("train")
    assert len(train.target_images) == 8 and not (DATA / "target" / "labels" / "train").exists()
    item = train[0]
    assert item["source"]["semantic"].shape == (32, 32) and item["target"]["image"].shape == (3, 32, 32)
    assert len(dm.make_dataset("val")) == 4


def test_uda_folder_and_cityscapes_need_one_class_list(tmp_path):
    from vitlab.uda import UDADataModule

    with pytest.raises(ValueError, match="19 Cityscapes train classes.*lists 7"):
        UDADataModule(source="gta5", source_root="data/gta", target="folder", target_root=str(DATA / "target"))
    with pytest.raises(ValueError, match="needs `source_scale`"):
        UDADataModule(source="folder", source_root=str(DATA / "source"))
