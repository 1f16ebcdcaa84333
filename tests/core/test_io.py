"""Readers/writers in vitlab.core.data.io: round trips, exact values on hand-made fixtures, errors, real samples."""

from __future__ import annotations

import struct
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from vitlab.core.data import colormaps as vcm
from vitlab.core.data import io as vio
from vitlab.core.data.io import DatasetFormatError

DATA = Path(__file__).resolve().parents[1] / "data"
SHARED = Path(__file__).resolve().parents[2].parent / "shared" / "data"
INF = np.inf


@pytest.fixture(scope="module")
def shared() -> Path:
    if not SHARED.is_dir():
        pytest.skip("../shared/data not present: real-sample tests need it")
    return SHARED


def valid_stats(d: np.ndarray) -> tuple[float, float, float]:
    """(min, max, valid %) over finite pixels."""
    v = np.isfinite(d)
    return float(d[v].min()), float(d[v].max()), 100.0 * float(v.mean())


# ----------------------------------------------------------------------------------------------------------
# round trips
# ----------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("little_endian", [True, False])
@pytest.mark.parametrize("shape", [(5, 7), (4, 6, 3)])
def test_pfm_round_trip_exact(tmp_path, little_endian, shape):
    rng = np.random.default_rng(0)
    a = (rng.standard_normal(shape) * 100).astype(np.float32)
    a.flat[0], a.flat[3], a.flat[-1] = np.inf, np.nan, -np.inf
    path = tmp_path / "x.pfm"
    vio.write_pfm(path, a, little_endian=little_endian)
    head = path.read_bytes()[:20]
    assert head.startswith(b"PF\n" if len(shape) == 3 else b"Pf\n")
    assert (b"\n-1.0\n" in head) == little_endian
    b = vio.read_pfm(path)
    assert b.dtype == np.float32 and b.shape == shape
    np.testing.assert_array_equal(a.view(np.uint32), b.view(np.uint32))  # bit-exact, nan/inf included


def test_pfm_write_rows_bottom_up_and_scale(tmp_path):
    a = np.array([[1, 2], [3, 4]], dtype=np.float32)
    path = tmp_path / "x.pfm"
    vio.write_pfm(path, a, scale=2.5, little_endian=False)
    raw = path.read_bytes()
    assert raw.startswith(b"Pf\n2 2\n2.5\n")
    assert struct.unpack(">4f", raw[-16:]) == (3, 4, 1, 2)


def test_kitti_round_trip(tmp_path):
    d = np.array([[INF, 1.0, 2.5, 10.25], [0.0, -3.0, np.nan, 64.5], [300.0, 1e-4, 0.5, 100.0]], np.float32)
    path = tmp_path / "disp.png"
    vio.write_kitti_disparity(path, d)
    with Image.open(path) as im:
        assert im.mode == "I;16"
        v = np.array(im)
    np.testing.assert_array_equal(v, [[0, 256, 640, 2624], [0, 0, 0, 16512], [65535, 1, 128, 25600]])
    back = vio.read_kitti_disparity(path)
    expected = np.array([[INF, 1.0, 2.5, 10.25], [INF, INF, INF, 64.5], [65535 / 256, 1 / 256, 0.5, 100.0]])
    np.testing.assert_array_equal(back, expected.astype(np.float32))
    # any value on the 1/256 grid inside the range comes back exactly
    grid = np.arange(1, 65536, 97, dtype=np.float32)[None, :] / 256
    vio.write_kitti_disparity(path, grid)
    np.testing.assert_array_equal(vio.read_kitti_disparity(path), grid)


def test_png16_round_trip(tmp_path):
    a = np.array([[0, 1, 255, 256], [4095, 32768, 65534, 65535]], dtype=np.uint16)
    path = tmp_path / "sub" / "x.png"
    vio.write_png16(path, a)
    assert path.read_bytes()[24:26] == b"\x10\x00"  # IHDR: bit depth 16, greyscale
    np.testing.assert_array_equal(vio.read_label_png(path), a)
    assert vio.read_label_png(path).dtype == np.uint16
    np.testing.assert_array_equal(vio.read_png_scaled(path, 1.0, None), a.astype(np.float32))
    with pytest.raises(ValueError, match="0..65535"):
        vio.write_png16(tmp_path / "neg.png", np.array([[-1, 2]]))


# ----------------------------------------------------------------------------------------------------------
# exact values on the committed fixtures (see tests/data/*/make_fixtures.py)
# ----------------------------------------------------------------------------------------------------------


def test_pfm_fixture_little_endian_bottom_up():
    raw = (DATA / "pfm" / "le_4x3.pfm").read_bytes()
    assert raw.startswith(b"Pf\n4 3\n-1.0\n")
    assert struct.unpack("<f", raw[12:16])[0] == 20.5  # first stored value = bottom-left pixel
    a = vio.read_pfm(DATA / "pfm" / "le_4x3.pfm")
    assert a.shape == (3, 4) and a.dtype == np.float32
    np.testing.assert_array_equal(a, [[10 * r + c + 0.5 for c in range(4)] for r in range(3)])


def test_pfm_fixture_big_endian_rgb():
    a = vio.read_pfm(DATA / "pfm" / "be_rgb_2x2.pfm")
    assert a.shape == (2, 2, 3) and a.dtype == np.float32
    expected = [[[100 * r + 10 * c + ch for ch in range(3)] for c in range(2)] for r in range(2)]
    np.testing.assert_array_equal(a, expected)
    with pytest.raises(DatasetFormatError, match="be_rgb_2x2.pfm.*single-channel"):
        vio.read_disparity_pfm(DATA / "pfm" / "be_rgb_2x2.pfm")


def test_pfm_fixture_holes_kept_raw_and_invalid_for_disparity():
    path = DATA / "pfm" / "holes_3x2.pfm"
    assert path.read_bytes().startswith(b"Pf \n3 2 \n-1.0\n")  # SceneFlow-style spaces in the header
    raw = vio.read_pfm(path)
    assert raw[0, 0] == INF and np.isnan(raw[1, 0])
    np.testing.assert_array_equal(raw[:, 1:], [[1.25, 0.0], [-2.0, 7.75]])
    disp = vio.read_disparity_pfm(path)
    np.testing.assert_array_equal(disp, [[INF, 1.25, INF], [INF, INF, 7.75]])


def test_kitti_fixture_values():
    d = vio.read_kitti_disparity(DATA / "kitti" / "training" / "disp_occ_0" / "000000_10.png")
    expected = [[INF, 1, 2.5, 10.25], [255.99609375, INF, 0.00390625, 64.5], [0.5, 2, INF, 100]]
    assert d.dtype == np.float32
    np.testing.assert_array_equal(d, np.array(expected, np.float32))


def test_middlebury_fixtures():
    pgm = vio.read_png_scaled(DATA / "middlebury" / "tsukuba" / "truedisp.row3.col3.pgm", 16)
    np.testing.assert_array_equal(pgm, [[INF, 5, 6, 14], [7, INF, 8, 10], [11, 5, INF, 1]])
    cones = vio.read_png_scaled(DATA / "middlebury" / "cones" / "disp2.png", 4)
    np.testing.assert_array_equal(cones, [[INF, 5.5, 55, 1], [25, INF, 0.75, 63.75], [10, 10.25, 10.5, INF]])
    ppm = vio.read_image(DATA / "middlebury" / "tsukuba" / "scene1.row3.col3.ppm")
    assert ppm.shape == (3, 4, 3) and ppm.dtype == np.uint8
    np.testing.assert_array_equal(ppm[2, 1], [21, 101, 202])
    grey = vio.read_image(DATA / "middlebury" / "tsukuba" / "truedisp.row3.col3.pgm")
    assert grey.shape == (3, 4, 3)
    np.testing.assert_array_equal(grey[0, 3], [224, 224, 224])


def test_palette_png_scaled_through_palette_but_labels_are_indices():
    path = DATA / "middlebury" / "v2" / "groundtruth.png"
    with Image.open(path) as im:
        assert im.mode == "P"
    idx = vio.read_label_png(path)
    np.testing.assert_array_equal(idx, [[0, 1, 2, 3], [4, 0, 1, 2], [3, 4, 0, 1]])
    assert idx.dtype == np.uint8
    d = vio.read_png_scaled(path, 16)  # greys 0, 224, 176, 160, 128 -> /16
    np.testing.assert_array_equal(d, [[INF, 14, 11, 10], [8, INF, 14, 11], [10, 8, INF, 14]])


def test_colour_palette_label_png():
    path = DATA / "labels" / "voc_palette.png"
    lab = vio.read_label_png(path)
    np.testing.assert_array_equal(lab, [[0, 1, 2, 255], [1, 1, 0, 2], [255, 2, 2, 0]])
    with pytest.raises(DatasetFormatError, match="voc_palette.png.*read_label_png"):
        vio.read_png_scaled(path, 1.0)


def test_depth_png_fixture():
    path = DATA / "depth_png" / "depth_mm.png"
    v = np.array([[0, 1000, 1490, 10000], [2500, 0, 65535, 1], [750, 3333, 0, 4096]], np.float32)
    d = vio.read_depth_png(path)
    assert d.dtype == np.float32
    np.testing.assert_array_equal(d, np.where(v == 0, INF, v / np.float32(1000)))
    assert d[0, 3] == np.float32(10.0) and d[1, 3] == np.float32(0.001)
    pseudo = vio.read_png_scaled(path, 2**16)  # MultiMAE-style pseudo-depth scale
    np.testing.assert_array_equal(pseudo, np.where(v == 0, INF, v / np.float32(2**16)))


def test_read_image_modes(tmp_path):
    rgba = np.zeros((2, 3, 4), np.uint8)
    rgba[..., 0], rgba[..., 3] = 200, 10
    Image.fromarray(rgba, "RGBA").save(tmp_path / "a.png")
    out = vio.read_image(tmp_path / "a.png")
    assert out.shape == (2, 3, 3) and (out[..., 0] == 200).all()
    Image.fromarray(np.full((5, 4, 3), 90, np.uint8)).save(tmp_path / "b.jpg", quality=95)
    out = vio.read_image(tmp_path / "b.jpg")
    assert out.shape == (5, 4, 3) and out.dtype == np.uint8 and abs(int(out.mean()) - 90) <= 2


# ----------------------------------------------------------------------------------------------------------
# visualisation
# ----------------------------------------------------------------------------------------------------------


def test_colorize():
    a = np.array([[0.0, 0.5, 1.0], [INF, np.nan, 2.0]])
    out = vcm.colorize(a, vmin=0.0, vmax=1.0)
    assert out.shape == (2, 3, 3) and out.dtype == np.uint8
    assert (out[1, :2] == 0).all()  # invalid drawn black
    np.testing.assert_array_equal(out[1, 2], out[0, 2])  # clipped to vmax
    assert tuple(out[0, 0]) == (0x30, 0x12, 0x3B) and tuple(out[0, 2]) == (0x7A, 0x04, 0x03)  # turbo ends
    m = vcm.colorize(np.array([[1.0, 3.0]]), cmap="magma")
    assert tuple(m[0, 0]) == (0, 0, 4) and tuple(m[0, 1]) == (0xFC, 0xFD, 0xBF)
    assert (vcm.colorize(np.full((2, 2), INF)) == 0).all()
    assert len({tuple(c) for c in vcm.colorize(np.linspace(0, 1, 256)[None])[0]}) > 200
    with pytest.raises(ValueError, match="cmap"):
        vcm.colorize(a, cmap="jet")


def test_label_palette_and_colorize_labels():
    pal = vcm.label_palette(256)
    assert pal.shape == (256, 3) and pal.dtype == np.uint8
    np.testing.assert_array_equal(pal[:4], [[0, 0, 0], [128, 0, 0], [0, 128, 0], [128, 128, 0]])
    np.testing.assert_array_equal(pal[255], [224, 224, 192])  # VOC palette
    assert len({tuple(c) for c in pal}) == 256
    np.testing.assert_array_equal(vcm.label_palette(256), pal)
    lab = vio.read_label_png(DATA / "labels" / "voc_palette.png")
    out = vcm.colorize_labels(lab, num_classes=3)
    np.testing.assert_array_equal(out[0], [[0, 0, 0], [128, 0, 0], [0, 128, 0], [255, 255, 255]])
    with pytest.raises(ValueError, match=r"\[2\]"):
        vcm.colorize_labels(lab, num_classes=2)


# ----------------------------------------------------------------------------------------------------------
# errors: each names the path
# ----------------------------------------------------------------------------------------------------------

READERS = [
    vio.read_pfm,
    vio.read_disparity_pfm,
    vio.read_kitti_disparity,
    lambda p: vio.read_png_scaled(p, 16),
    vio.read_depth_png,
    vio.read_label_png,
    vio.read_image,
]


@pytest.mark.parametrize("reader", READERS)
def test_missing_file_names_path(tmp_path, reader):
    path = tmp_path / "nope" / "missing_file.xyz"
    with pytest.raises(FileNotFoundError, match="missing_file.xyz"):
        reader(path)


@pytest.mark.parametrize("reader", READERS)
def test_directory_instead_of_file(tmp_path, reader):
    with pytest.raises(DatasetFormatError, match=str(tmp_path.name)):
        reader(tmp_path)


def test_truncated_pfm_names_path_and_size():
    path = DATA / "pfm" / "truncated.pfm"
    with pytest.raises(DatasetFormatError, match=r"truncated\.pfm.*48 bytes.*only 40"):
        vio.read_pfm(path)


def test_bad_pfm_header_names_path():
    with pytest.raises(DatasetFormatError, match=r"bad_header\.pfm.*'Pf'"):
        vio.read_pfm(DATA / "pfm" / "bad_header.pfm")


@pytest.mark.parametrize(
    "content, message",
    [
        (b"Pf\n4 3\nabc\n" + bytes(48), "scale"),
        (b"Pf\n4 3\n0\n" + bytes(48), "scale"),
        (b"Pf\n4\n", "malformed"),
        (b"Pf\n0 3\n-1\n", "non-positive"),
        (b"Pf\n1 1\n-1\n" + bytes(8), "trailing"),
        (b"", "magic"),
    ],
)
def test_malformed_pfm(tmp_path, content, message):
    path = tmp_path / "broken.pfm"
    path.write_bytes(content)
    with pytest.raises(DatasetFormatError, match=f"broken.pfm.*{message}"):
        vio.read_pfm(path)


def test_pfm_crlf_header(tmp_path):
    path = tmp_path / "crlf.pfm"
    path.write_bytes(b"Pf\r\n2 1\r\n-1\r\n" + struct.pack("<2f", 1.5, 2.5))
    np.testing.assert_array_equal(vio.read_pfm(path), [[1.5, 2.5]])


def test_kitti_rejects_8bit_png():
    path = DATA / "kitti" / "disp_8bit.png"
    with pytest.raises(DatasetFormatError, match=r"disp_8bit\.png.*8-bit.*16-bit"):
        vio.read_kitti_disparity(path)


def test_kitti_rejects_non_png(tmp_path):
    with pytest.raises(DatasetFormatError, match=r"le_4x3\.pfm.*not a PNG"):
        vio.read_kitti_disparity(DATA / "pfm" / "le_4x3.pfm")


def test_truncated_png_names_path():
    path = DATA / "kitti" / "truncated.png"
    with pytest.raises(DatasetFormatError, match=r"truncated\.png.*cannot decode"):
        vio.read_kitti_disparity(path)
    with pytest.raises(DatasetFormatError, match=r"truncated\.png"):
        vio.read_label_png(path)


def test_not_an_image_names_path(tmp_path):
    path = tmp_path / "notes.png"
    path.write_text("hello")
    for reader in READERS[3:]:
        with pytest.raises(DatasetFormatError, match="notes.png"):
            reader(path)


def test_wrong_channel_count_names_path(tmp_path):
    path = tmp_path / "rgb.png"
    Image.fromarray(np.zeros((2, 2, 3), np.uint8)).save(path)
    with pytest.raises(DatasetFormatError, match=r"rgb\.png: single-channel.* has 3 channels \(RGB\).*expected 1 channel"):
        vio.read_png_scaled(path, 16)
    with pytest.raises(DatasetFormatError, match=r"rgb\.png.*'RGB'"):
        vio.read_label_png(path)


def test_read_image_rejects_16bit():
    with pytest.raises(DatasetFormatError, match=r"depth_mm\.png: image for a uint8 pipeline is stored as a 16-bit greyscale PNG, expected 1-bit or 8-bit"):
        vio.read_image(DATA / "depth_png" / "depth_mm.png")


# ----------------------------------------------------------------------------------------------------------
# real samples from ../shared/data (ranges from its SOURCES.md)
# ----------------------------------------------------------------------------------------------------------


def assert_stats(d, shape, lo, hi, valid_pct, tol=0.02, pct_tol=0.1):
    assert d.dtype == np.float32 and d.shape == shape
    mn, mx, pct = valid_stats(d)
    assert mn == pytest.approx(lo, abs=tol) and mx == pytest.approx(hi, abs=tol)
    assert pct == pytest.approx(valid_pct, abs=pct_tol)
    assert not np.isnan(d).any() and not np.isneginf(d).any()


def test_real_middlebury2001_pgm(shared):
    d = vio.read_png_scaled(shared / "middlebury2001/tsukuba/truedisp.row3.col3.pgm", 16)
    assert_stats(d, (288, 384), 5.0, 14.0, 79.3)
    for name in ("scene1.row3.col3.ppm", "scene1.row3.col4.ppm"):
        img = vio.read_image(shared / "middlebury2001/tsukuba" / name)
        assert img.shape == (288, 384, 3) and img.dtype == np.uint8


def test_real_middlebury2003_cones(shared):
    left = vio.read_png_scaled(shared / "middlebury2003/cones/disp2.png", 4)
    assert_stats(left, (375, 450), 5.5, 55.0, 96.8)
    right = vio.read_png_scaled(shared / "middlebury2003/cones/disp6.png", 4)
    assert right.shape == (375, 450) and np.isfinite(right).mean() > 0.95
    assert vio.read_image(shared / "middlebury2003/cones/im2.png").shape == (375, 450, 3)


def test_real_middlebury_v2_palette_groundtruth(shared):
    path = shared / "middlebury_v2_eval/tsukuba/groundtruth.png"
    assert vio.read_label_png(path).max() == 7  # raw palette indices: meaningless as disparity
    d = vio.read_png_scaled(path, 16)
    assert_stats(d, (288, 384), 5.0, 14.0, 79.3)
    # the v2 palette file encodes the same ground truth as the 2001 PGM
    pgm = vio.read_png_scaled(shared / "middlebury2001/tsukuba/truedisp.row3.col3.pgm", 16)
    np.testing.assert_array_equal(d, pgm)
    for mask in ("nonocc.png", "all.png"):
        m = vio.read_png_scaled(shared / "middlebury_v2_eval/tsukuba" / mask, 1.0, invalid_value=None)
        assert set(np.unique(m).tolist()) <= {0.0, 255.0} and (m == 255).any()
    assert vio.read_image(shared / "middlebury_v2_eval/tsukuba/imL.png").shape == (288, 384, 3)


def test_real_middlebury2006_halfsize(shared):
    d = vio.read_png_scaled(shared / "middlebury2006/HalfSize/Wood2/disp1.png", 2)
    assert_stats(d, (555, 653), 21.5, 108.5, 98.1)
    assert vio.read_image(shared / "middlebury2006/HalfSize/Wood2/view1.png").shape == (555, 653, 3)


def test_real_eth3d_pfm(shared):
    path = shared / "eth3d_tum_cvc2019/terrace/disp0.pfm"
    assert path.read_bytes()[:11] == b"Pf\n713 434\n"
    raw = vio.read_pfm(path)
    assert np.isposinf(raw).any()  # holes stored as +inf
    d = vio.read_disparity_pfm(path)
    assert_stats(d, (434, 713), 8.12, 17.42, 53.2, tol=0.01)
    np.testing.assert_array_equal(np.isfinite(d), np.isfinite(raw))
    assert vio.read_image(shared / "eth3d_tum_cvc2019/terrace/im0.png").shape == (434, 713, 3)


def test_real_kitti2012(shared):
    root = shared / "kitti2012/data_stereo_flow/training"
    d = vio.read_kitti_disparity(root / "disp_occ/000000_10.png")
    assert_stats(d, (370, 1226), 4.40, 69.82, 35.8, tol=0.01)
    refl = vio.read_kitti_disparity(root / "disp_refl_occ/000000_10.png")
    assert np.isfinite(refl).sum() == 58
    for view in ("colored_0", "colored_1"):
        assert vio.read_image(root / view / "000000_10.png").shape == (370, 1226, 3)
    with pytest.raises(DatasetFormatError, match=r"colored_0.*8-bit RGB"):
        vio.read_kitti_disparity(root / "colored_0/000000_10.png")


def test_real_kitti2015(shared):
    root = shared / "kitti2015/data_scene_flow/training"
    d = vio.read_kitti_disparity(root / "disp_occ_0/000000_10.png")
    assert_stats(d, (375, 1242), 4.62, 64.09, 19.1, tol=0.01)
    assert vio.read_image(root / "image_2/000000_10.png").shape == (375, 1242, 3)


def test_real_sceneflow_pfm(shared):
    path = shared / "sceneflow/flyingthings3d/disparity/TRAIN/A/0000/left/0006.pfm"
    assert path.read_bytes().startswith(b"Pf \n960 540 \n-1.0\n")
    d = vio.read_disparity_pfm(path)
    assert_stats(d, (540, 960), 1.21, 152.12, 100.0, tol=0.01, pct_tol=1e-9)
    np.testing.assert_array_equal(d, vio.read_pfm(path))  # dense, positive: nothing marked invalid
    img = vio.read_image(shared / "sceneflow/flyingthings3d/frames_cleanpass/TRAIN/A/0000/left/0006.png")
    assert img.shape == (540, 960, 3)


def test_real_nyu_depth(shared):
    d = vio.read_depth_png(shared / "nyu_depth_v2_mmseg_sample/annotations/bookstore_0001d_00001.png")
    assert_stats(d, (120, 160), 1.49, 10.0, 66.0, tol=0.01, pct_tol=0.5)
    rgb = vio.read_image(shared / "nyu_depth_v2_mmseg_sample/images/bookstore_0001d_00001.jpg")
    assert rgb.shape == (120, 160, 3)


def test_real_cityscapes_labels(shared):
    gt = shared / "cityscapes_mmseg_sample/gtFine/val/frankfurt"
    train_ids = vio.read_label_png(gt / "frankfurt_000000_000294_gtFine_labelTrainIds.png")
    assert train_ids.shape == (128, 256) and train_ids.dtype == np.uint8
    values = set(np.unique(train_ids).tolist())
    assert values <= set(range(19)) | {255} and 255 in values and len(values) > 3
    inst = vio.read_label_png(gt / "frankfurt_000000_000294_gtFine_instanceIds.png")
    assert inst.dtype == np.uint16 and inst.max() > 255
    assert (inst // 1000 <= 33).all()
    rgb = vio.read_image(
        shared / "cityscapes_mmseg_sample/leftImg8bit/val/frankfurt/frankfurt_000000_000294_leftImg8bit.png"
    )
    assert rgb.shape == (128, 256, 3)
    out = vcm.colorize_labels(train_ids, num_classes=19)
    assert out.shape == (128, 256, 3)


def test_real_natural_images_and_colorize(shared):
    img = vio.read_image(shared / "natural_images_skimage/chelsea.png")
    assert img.shape == (300, 451, 3) and img.dtype == np.uint8
    d = vio.read_disparity_pfm(shared / "eth3d_tum_cvc2019/terrace/disp0.pfm")
    vis = vcm.colorize(d)
    assert vis.shape == (434, 713, 3)
    assert (vis[~np.isfinite(d)] == 0).all() and (vis[np.isfinite(d)].sum(-1) > 0).all()


# ----------------------------------------------------------------------------------------------------------
# bit depth and value range against the format
# ----------------------------------------------------------------------------------------------------------


def _png8(path: Path, a) -> Path:
    Image.fromarray(np.asarray(a, np.uint8)).save(path)
    return path


def _png16(path: Path, a) -> Path:
    vio.write_png16(path, np.asarray(a, np.uint16))
    return path


def test_depth_png_refuses_8bit_file(tmp_path):
    """An 8-bit PNG read as NYU millimetres would give depths of at most 0.255 m: refused, naming both formats."""
    path = _png8(tmp_path / "depth8.png", [[0, 120, 255], [30, 40, 50]])
    with pytest.raises(DatasetFormatError, match=r"depth8\.png: depth PNG .* is stored as an 8-bit greyscale PNG, expected 16-bit"):
        vio.read_depth_png(path)
    from vitlab.core.data import decode_nyu_depth

    with pytest.raises(DatasetFormatError, match=r"depth8\.png: depth PNG \(16-bit greyscale.*8-bit greyscale PNG"):
        decode_nyu_depth(path)


def test_depth_png_refuses_8bit_values_in_16bit_file(tmp_path):
    path = _png16(tmp_path / "widened.png", [[0, 120, 255], [30, 40, 50]])
    with pytest.raises(DatasetFormatError, match=r"widened\.png: depth PNG .* has every valid value below 256 \(max 255\)"):
        vio.read_depth_png(path)
    ok = _png16(tmp_path / "ok.png", [[0, 256, 1000]])  # one value past 8 bits: plausibly millimetres
    np.testing.assert_array_equal(vio.read_depth_png(ok), np.float32([[INF, 0.256, 1.0]]))
    empty = _png16(tmp_path / "nogt.png", [[0, 0]])  # no valid pixel: nothing to judge, all invalid
    assert np.isinf(vio.read_depth_png(empty)).all()


def test_middlebury_disparity_is_8bit(tmp_path):
    path = _png8(tmp_path / "disp1.png", [[0, 60, 61], [2, 255, 0]])
    np.testing.assert_array_equal(vio.read_middlebury_disparity(path, 2), [[INF, 30, 30.5], [1, 127.5, INF]])
    # the 8-bit PGM of Middlebury 2001 and the grey-palette PNG of v2 are the same format
    pgm = vio.read_middlebury_disparity(DATA / "middlebury" / "tsukuba" / "truedisp.row3.col3.pgm", 16)
    np.testing.assert_array_equal(pgm, vio.read_png_scaled(DATA / "middlebury" / "tsukuba" / "truedisp.row3.col3.pgm", 16))
    pal = vio.read_middlebury_disparity(DATA / "middlebury" / "v2" / "groundtruth.png", 16)
    assert pal[0, 1] == 14
    wide = _png16(tmp_path / "disp16.png", [[0, 60 * 256], [120 * 256, 65535]])
    with pytest.raises(DatasetFormatError,
                       match=r"disp16\.png: Middlebury disparity image \(8-bit greyscale.* is stored as a 16-bit greyscale PNG, expected 8-bit"):
        vio.read_middlebury_disparity(wide, 2)


def test_png_scaled_value_checks_name_file_and_values(tmp_path):
    mask = _png8(tmp_path / "mask0nocc.png", [[0, 128, 255], [7, 255, 9]])
    with pytest.raises(DatasetFormatError, match=r"mask0nocc\.png: my mask has values 7, 9, expected one of 0, 128, 255$"):
        vio.read_png_scaled(mask, 1.0, None, allowed_values=(0, 128, 255), format_name="my mask")
    with pytest.raises(DatasetFormatError, match=r"mask0nocc\.png: r has value 255, expected 0\.\.200 or 0 \(invalid\)$"):
        vio.read_png_scaled(mask, 1.0, 0, value_range=(0, 200), format_name="r")
    # invalid pixels (0) do not count against the range
    np.testing.assert_array_equal(
        vio.read_png_scaled(mask, 1.0, 0, value_range=(7, 255), bit_depth=8)[0], [INF, 128, 255])
    with pytest.raises(DatasetFormatError, match=r"mask0nocc\.png: .* is stored as an 8-bit greyscale PNG, expected 16-bit"):
        vio.read_png_scaled(mask, 1.0, bit_depth=16)
