"""GTA5 / SYNTHIA ids outside their format are refused naming the file (not mapped to ignore); empty labels warn;
the rare-class-sampling stats follow label edits."""

from __future__ import annotations

import json
import os
import shutil
import warnings
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from vitlab.core.data import DatasetFormatError, EmptyGroundTruthWarning
from vitlab.uda.data import class_stats, decode_gta_label, decode_synthia_label, gta_pairs

DATA = Path(__file__).resolve().parents[1] / "data"


def _gta_label(src: Path, dst: Path, edit) -> Path:
    """Copy a GTA5 palette label with its ids edited; the palette is kept, as GTA5 ships it."""
    im = Image.open(src)
    ids = np.array(im)
    edit(ids)
    out = Image.fromarray(ids)
    out.putpalette(im.getpalette())
    out.save(dst)
    return dst


def test_gta_label_250_is_refused(tmp_path):
    path = _gta_label(DATA / "gta5" / "labels" / "00001.png", tmp_path / "00001.png",
                      lambda a: a.__setitem__((3, 4), 250))
    assert Image.open(path).mode == "P"
    with pytest.raises(DatasetFormatError, match=rf"{path}: GTA5 label .* has value 250, "
                                                 rf"expected 0\.\.33 or 255 \(ignore\)$"):
        decode_gta_label(path)


def test_synthia_id_250_is_refused(tmp_path):
    import cv2

    lab = cv2.imread(str(DATA / "synthia" / "GT" / "LABELS" / "0000000.png"), cv2.IMREAD_UNCHANGED)
    lab[3, 4, -1] = 250
    path = tmp_path / "0000000.png"
    assert cv2.imwrite(str(path), lab)
    with pytest.raises(DatasetFormatError, match=rf"{path}: SYNTHIA label .* has value 250, expected 0\.\.22$"):
        decode_synthia_label(path)


def test_gta_label_without_a_train_class_warns_once(tmp_path):
    path = _gta_label(DATA / "gta5" / "labels" / "00001.png", tmp_path / "void.png", lambda a: a.fill(1))
    with pytest.warns(EmptyGroundTruthWarning, match=rf"{path}: .* no valid pixel \(all 255 \(ignore\)\)"):
        assert (decode_gta_label(path) == 255).all()
    with warnings.catch_warnings():
        warnings.simplefilter("error", EmptyGroundTruthWarning)
        decode_gta_label(path)


def test_class_stats_are_recomputed_for_a_changed_label(tmp_path):
    root = tmp_path / "gta5"
    shutil.copytree(DATA / "gta5", root)
    pairs = gta_pairs(root)
    before = class_stats(pairs, decode_gta_label, root)
    assert "15" in before[2]  # the bus frame
    label = pairs[2][1]
    stamp = label.stat().st_mtime_ns
    _gta_label(label, label, lambda a: a.__setitem__(a == 28, 26))  # the bus relabelled as a car
    os.utime(label, ns=(stamp + 10**9, stamp + 10**9))
    after = class_stats(pairs, decode_gta_label, root)
    assert "15" not in after[2] and after[2]["13"] == before[2]["13"] + before[2]["15"]
    assert after[:2] == before[:2] and after[3] == before[3]
    cached = json.loads((root / "sample_class_stats.json").read_text())
    assert "15" not in cached[2]


def test_class_stats_survive_a_copy_that_changes_only_mtimes(tmp_path):
    root = tmp_path / "gta5"
    shutil.copytree(DATA / "gta5", root)
    cache = root / "sample_class_stats.json"
    for _, label in gta_pairs(root):
        os.utime(label, ns=(1, 1))
    text = cache.read_text()
    calls = []
    stats = class_stats(gta_pairs(root), lambda p: calls.append(p) or decode_gta_label(p), root)
    assert not calls and cache.read_text() == text and len(stats) == 4  # same content: the cache holds
