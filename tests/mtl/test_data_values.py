"""PASCAL-MT and NYUD-MT files with values, layouts or encodings outside their format are refused naming the file."""

from __future__ import annotations

import shutil
import warnings
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from vitlab.core.data import DatasetFormatError, EmptyGroundTruthWarning
from vitlab.mtl.datasets import NYUDMT, PASCALContextMT

DATA = Path(__file__).resolve().parents[1] / "data"
PASCAL_ID, NYUD_ID = "2008_000002", "0001"  # first train sample of each fixture


@pytest.fixture
def pascal(tmp_path) -> Path:
    root = tmp_path / "PASCAL_MT"
    shutil.copytree(DATA / "pascal_context" / "PASCAL_MT", root)
    return root


@pytest.fixture
def nyud(tmp_path) -> Path:
    root = tmp_path / "NYUD_MT"
    shutil.copytree(DATA / "nyud_mt" / "NYUD_MT", root)
    return root


def _edit_png(path: Path, value: int) -> None:
    a = np.asarray(Image.open(path)).copy()
    a[3, 4] = value
    Image.fromarray(a).save(path)


def test_pascal_semseg_250_is_refused(pascal):
    path = pascal / "semseg" / "VOC12" / f"{PASCAL_ID}.png"
    _edit_png(path, 250)
    with pytest.raises(DatasetFormatError, match=rf"{path}: PASCAL-MT semseg label .* has value 250, "
                                                 rf"expected 0\.\.20 or 255 \(ignore\)$"):
        PASCALContextMT(str(pascal), tasks=["semseg"])[0]


def test_nyud_semseg_250_is_refused(nyud):
    path = nyud / "segmentation" / f"{NYUD_ID}.png"
    _edit_png(path, 250)
    with pytest.raises(DatasetFormatError, match=rf"{path}: NYUD-MT semseg label .* has value 250, "
                                                 rf"expected 1\.\.40 or 0 \(void\)$"):
        NYUDMT(str(nyud), tasks=["semseg"])[0]


def test_nyud_depth_stored_transposed_is_refused_not_reshaped(nyud):
    path = nyud / "depth" / f"{NYUD_ID}.npy"
    np.save(path, np.load(path).T.copy())  # (W, H): same size, reshape would scramble it silently
    with pytest.raises(DatasetFormatError, match=rf"{path}: NYUD-MT depth map .* has shape \(40, 32\), "
                                                 rf"expected \(H, W\) = \(32, 40\)"):
        NYUDMT(str(nyud), tasks=["depth"])[0]


def test_nyud_depth_of_another_size_names_the_file(nyud):
    path = nyud / "depth" / f"{NYUD_ID}.npy"
    np.save(path, np.ones((30, 40), np.float32))  # 1200 values for a 32x40 image
    with pytest.raises(DatasetFormatError, match=rf"{path}: .* has shape \(30, 40\)"):
        NYUDMT(str(nyud), tasks=["depth"])[0]


def test_nyud_normals_in_0_255_are_refused(nyud):
    path = nyud / "normals" / f"{NYUD_ID}.npy"
    n = np.load(path)
    np.save(path, np.round((n + 1) * 127.5).astype(np.float32))  # an 8-bit PNG's values saved as .npy
    with pytest.raises(DatasetFormatError, match=rf"{path}: NYUD-MT normals map .* has values .*255, "
                                                 rf"expected -1\.\.1"):
        NYUDMT(str(nyud), tasks=["normals"])[0]


def test_pascal_16bit_saliency_is_refused(pascal):
    path = pascal / "sal_distill" / f"{PASCAL_ID}.png"
    sal = np.asarray(Image.open(path)).astype(np.uint16) * 257
    Image.fromarray(np.ascontiguousarray(sal, dtype="<u2")).save(path)
    with pytest.raises(DatasetFormatError, match=rf"{path}: PASCAL-MT saliency map .* is stored as a 16-bit "
                                                 rf"greyscale PNG, expected 8-bit$"):
        PASCALContextMT(str(pascal), tasks=["sal"])[0]


def test_pascal_greyscale_normals_png_is_refused(pascal):
    path = pascal / "normals_distill" / f"{PASCAL_ID}.png"
    Image.open(path).convert("L").save(path)
    with pytest.raises(DatasetFormatError, match=rf"{path}: PASCAL-MT normals map .* has 1 channel \(greyscale\)"
                                                 rf".*expected 3 channels \(RGB\)$"):
        PASCALContextMT(str(pascal), tasks=["normals"])[0]


def test_semseg_without_a_labelled_pixel_warns_once_naming_the_file(pascal):
    path = pascal / "semseg" / "VOC12" / f"{PASCAL_ID}.png"
    Image.fromarray(np.full(np.asarray(Image.open(path)).shape, 255, np.uint8)).save(path)
    ds = PASCALContextMT(str(pascal), tasks=["semseg"])
    with pytest.warns(EmptyGroundTruthWarning, match=rf"{path}: PASCAL-MT semseg label .* no valid pixel"):
        assert (ds[0]["semseg"] == 255).all()
    with warnings.catch_warnings():
        warnings.simplefilter("error", EmptyGroundTruthWarning)
        ds[0]
