"""Every dataset reader holds its files against its declared format contract.

The readers are discovered, not listed: every vitlab module is imported, every reader that declared a
contract (:data:`vitlab.core.data.READERS`) gets a valid file (it must read) and one file per constraint of its
contract that breaks it (it must raise a one-line DatasetFormatError naming the file). A public
``read_*``/``decode_*`` function that reads data files without declaring a contract fails the test.
"""

from __future__ import annotations

import ast
import importlib
import inspect
import pkgutil
import warnings
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import vitlab
from vitlab.core.data import READERS, DatasetFormatError, EmptyGroundTruthWarning, FormatContract, write_pfm

MODULES = sorted(m.name for m in pkgutil.walk_packages(vitlab.__path__, "vitlab."))
for _name in MODULES:  # registering happens at import
    importlib.import_module(_name)

H, W = 6, 8
# low-level decoders: a public read_*/decode_* function that calls one of these (or a registered reader) reads
# dataset files and must declare what it accepts
_FILE_DECODERS = {"open_image", "loadmat", "imread", "fromfile", "_load_npy", "_loadmat", "_photo_array"}


# ------------------------------------------------------------------------------------------ file writers


def _kind(c: FormatContract) -> str:
    return "f" if c.dtype is not None and "f" in c.dtype and c.container in ("npy", "pfm") else "u"


def _valid_value(c: FormatContract) -> float:
    """A stored value the contract accepts as valid ground truth (not the ignore value)."""
    cands: list[float] = []
    if c.allowed is not None:
        cands += sorted(c.allowed)
    if c.value_range is not None:
        lo, hi = c.value_range
        cands += [hi, lo, (lo + hi) / 2] if _kind(c) == "f" else [hi, lo, (lo + hi) // 2]
    cands += [1, 5, c.min_peak or 0]
    if c.value_range is not None:
        cands = [v for v in cands if c.value_range[0] <= v <= c.value_range[1]]
    if c.allowed is not None:
        cands = [v for v in cands if v in c.allowed]
    cands = [v for v in cands if v != c.ignore_index and (c.min_peak is None or v >= c.min_peak)]
    v = cands[0]
    return v * 0.5 if _kind(c) == "f" and c.value_range == (-1.0, 1.0) else v


def _invalid_value(c: FormatContract, bits: int) -> float | None:
    """A stored value outside the contract's legal values (250 when it is), or None when all are legal."""
    if _kind(c) == "f":
        hi = c.value_range[1] if c.value_range else None
        return None if hi is None else 255.0 if hi < 255 else hi * 2 + 1
    if c.allowed is None and c.value_range is None:
        return None
    hi = c.value_range[1] if c.value_range else max(c.allowed)
    for v in (250, int(hi) + 1, 2 ** bits - 2):
        if v == c.ignore_index or v >= 2 ** bits:
            continue
        if (c.value_range and not c.value_range[0] <= v <= c.value_range[1]) or (c.allowed and v not in c.allowed):
            return v
    return None


def _bits(c: FormatContract) -> int:
    return 8 if c.bit_depth is None or 8 in c.bit_depth else 16


def _channels(c: FormatContract) -> int:
    return c.channels[0] if c.channels else 1


def _array(c: FormatContract, value: float, bits: int, channels: int, shape: tuple[int, int] = (H, W)) -> np.ndarray:
    dtype = np.float32 if _kind(c) == "f" else (np.uint8 if bits == 8 else np.uint16)
    a = np.full((*shape, channels) if channels > 1 or c.layout == "HWC" else shape, value, dtype)
    if c.value_channel is None and a.ndim == 3 and c.value_range is None and c.allowed is None:
        a[..., 0] = 0  # colour files: channels that differ
    return a


def _write_image(path: Path, a: np.ndarray) -> Path:
    """PNG of any channel count and bit depth (OpenCV for 16-bit colour, which Pillow cannot write)."""
    if a.dtype == np.uint16 and a.ndim == 3:
        import cv2

        assert cv2.imwrite(str(path), a)
    else:
        Image.fromarray(a[..., 0] if a.ndim == 3 and a.shape[-1] == 1 else a).save(path)
    return path


def _write(c: FormatContract, path: Path, a: np.ndarray) -> Path:
    if c.container in ("png", "image"):
        return _write_image(path, a)
    if c.container == "npy":
        np.save(path, a)
    elif c.container == "pfm":
        write_pfm(path, a)
    elif c.container == "mat":
        from scipy.io import savemat

        savemat(path, {c.key: a})
    else:
        raise AssertionError(f"{c.name}: no test writer for container {c.container!r}: add one here")
    return path


_SUFFIX = {"png": ".png", "image": ".png", "npy": ".npy", "pfm": ".pfm", "mat": ".mat"}


def _valid_file(c: FormatContract, folder: Path) -> Path:
    return _write(c, folder / f"valid{_SUFFIX[c.container]}", _array(c, _valid_value(c), _bits(c), _channels(c)))


def _sized(reader) -> bool:
    return "size" in inspect.signature(reader.reader).parameters


def _violations(c: FormatContract, sized: bool) -> dict[str, Callable[[Path], Path]]:
    """One writer per constraint the contract declares, each breaking only that constraint (a map stored
    transposed only for readers told the size of its image)."""
    out: dict[str, Callable[[Path], Path]] = {}
    sfx = _SUFFIX[c.container]
    ok, bits, ch = _valid_value(c), _bits(c), _channels(c)
    out["not_this_format"] = lambda d: (d / f"garbage{sfx}").write_bytes(b"this is no such file\n" * 4) and d / f"garbage{sfx}"
    if c.container in ("png", "image") and c.bit_depth is not None:
        depth = 16 if 16 not in c.bit_depth else 8 if 8 not in c.bit_depth else None
        if depth is not None:
            v = min(ok, 2 ** depth - 1) if depth == 8 else max(ok, 1)
            out["bit_depth"] = lambda d: _write_image(d / "depth.png", _array(c, v, depth, ch))
    n = next((k for k in (1, 3, 2) if c.channels is not None and k not in c.channels), None)
    if c.container in ("png", "image") and n is not None:
        layout_c = FormatContract(c.name, layout="HWC" if n > 1 else None)
        out["channels"] = lambda d: _write_image(d / "channels.png", _array(layout_c, ok, bits, n).astype(
            np.uint8 if bits == 8 else np.uint16))
    bad = _invalid_value(c, bits)
    if bad is not None:
        out["value"] = lambda d: _write(c, d / f"value{sfx}", _put(_array(c, ok, bits, ch), c, bad))
    if c.min_peak is not None:
        out["min_peak"] = lambda d: _write(c, d / f"peak{sfx}", _array(c, c.min_peak // 4, bits, ch))
    if c.finite:
        out["non_finite"] = lambda d: _write(c, d / f"nan{sfx}", _put(_array(c, ok, bits, ch), c, np.nan))
    if c.container in ("npy", "mat") and c.dtype is not None and not {"f", "u", "i"} <= set(c.dtype):
        wrong = np.uint8 if "f" in c.dtype else np.float32
        out["dtype"] = lambda d: _write(c, d / f"dtype{sfx}", _array(c, ok, bits, ch).astype(wrong))
    if c.layout is not None and c.container in ("npy", "mat") and sized:
        out["transposed"] = lambda d: _write(c, d / f"transposed{sfx}", _array(c, ok, bits, ch, shape=(W, H)))
        if c.container == "npy":
            other_ch = 2 if c.layout == "HW" else None
            out["layout"] = lambda d: _write(
                c, d / f"layout{sfx}", np.full((H, W, other_ch) if other_ch else (H, W), ok, np.float32 if
                                               _kind(c) == "f" else np.uint8))
    if c.container == "pfm" and c.channels == (1,):
        out["channels"] = lambda d: _write(c, d / "rgb.pfm", np.full((H, W, 3), 1.0, np.float32))
    return out


def _put(a: np.ndarray, c: FormatContract, value: float) -> np.ndarray:
    a = a.copy()
    if a.ndim == 3 and c.value_channel is not None:
        a[1, 2, c.value_channel] = value
    else:
        a[1, 2] = value
    return a


def _call(reader, path: Path):
    r = reader
    kwargs = dict(r.kwargs)
    if _sized(r):
        kwargs["size"] = (H, W)
    return r.reader(path, **kwargs)


def _id(r) -> str:
    return f"{r.qualname}{dict(r.kwargs) or ''}"


CASES = [(r, kind) for r in READERS for kind in _violations(r.contract, _sized(r))]


# ------------------------------------------------------------------------------------------------- tests


def test_readers_are_registered_from_every_package():
    packages = {r.reader.__module__.split(".")[1] for r in READERS}
    assert {"core", "mtl", "uda", "stereo"} <= packages
    assert all(r.contract.name for r in READERS)


def test_every_public_file_reader_declares_a_contract():
    """A public ``read_*``/``decode_*`` function that decodes data files (itself or through a registered
    reader) must be registered, so a new reader cannot skip its value checks."""
    registered = {r.reader for r in READERS}
    reader_names = {r.reader.__name__ for r in READERS} | _FILE_DECODERS
    missing = []
    for name in MODULES:
        module = importlib.import_module(name)
        try:
            tree = ast.parse(inspect.getsource(module))
        except (OSError, TypeError):
            continue
        for node in tree.body:
            if not isinstance(node, ast.FunctionDef) or not node.name.startswith(("read_", "decode_")):
                continue
            used = {n.id for n in ast.walk(node) if isinstance(n, ast.Name)}
            used |= {n.attr for n in ast.walk(node) if isinstance(n, ast.Attribute)}
            if used & reader_names and getattr(module, node.name) not in registered:
                missing.append(f"{name}.{node.name}")
    assert not missing, f"readers without a declared FormatContract (decorate them with declares): {missing}"


@pytest.mark.parametrize("reader", READERS, ids=_id)
def test_reader_accepts_a_file_within_its_contract(reader, tmp_path):
    """The control for the violations below: the same writer with legal values gives a readable file."""
    _call(reader, _valid_file(reader.contract, tmp_path))


@pytest.mark.parametrize(("reader", "violation"), CASES, ids=[f"{_id(r)}-{k}" for r, k in CASES])
def test_reader_refuses_a_violating_file_naming_it(reader, violation, tmp_path):
    path = _violations(reader.contract, _sized(reader))[violation](tmp_path)
    with pytest.raises(DatasetFormatError) as err:
        _call(reader, path)
    message = str(err.value)
    assert str(path) in message and "\n" not in message, message


@pytest.mark.parametrize("reader", [r for r in READERS if r.contract.warn_empty and r.contract.ignore_index is not None],
                         ids=_id)
def test_ground_truth_without_a_valid_pixel_warns_once_naming_the_file(reader, tmp_path):
    c = reader.contract
    path = _write(c, tmp_path / f"empty{_SUFFIX[c.container]}", _array(c, c.ignore_index, _bits(c), _channels(c)))
    with pytest.warns(EmptyGroundTruthWarning, match=str(path)):
        _call(reader, path)
    with warnings.catch_warnings():
        warnings.simplefilter("error", EmptyGroundTruthWarning)
        _call(reader, path)  # once per file


# ------------------------------------------------------------------------------- named cases, real layouts

DATA = Path(__file__).resolve().parents[1] / "data"


def _png16(path: Path, a: np.ndarray) -> Path:
    Image.fromarray(np.ascontiguousarray(a, dtype="<u2")).save(path)
    return path


def test_read_image_tensor_reads_16bit_at_full_precision_or_refuses_it_for_uint8(tmp_path):
    v = np.array([[0, 1, 257], [32768, 65534, 65535]], np.uint16)
    path = _png16(tmp_path / "grey16.png", v)
    t = vitlab.core.data.read_image_tensor(path, uint8=False)
    assert t.shape == (3, 2, 3) and t.dtype.is_floating_point
    np.testing.assert_allclose(t[0].numpy(), v / 65535.0, rtol=0, atol=1e-7)
    assert (t[0] == t[2]).all()
    with pytest.raises(DatasetFormatError, match=f"{path}: .* 16-bit greyscale PNG, expected 1-bit or 8-bit") as err:
        vitlab.core.data.read_image_tensor(path, uint8=True)
    assert "uint8=False" in err.value.hint


def test_imagefolder_refuses_a_16bit_grey_png_instead_of_decoding_it_white(tmp_path):
    import shutil

    from vitlab.core.data.imagefolder import ImageFolderDataModule

    root = tmp_path / "imagenet"
    shutil.copytree(DATA / "imagefolder", root)
    path = _png16(root / "train" / "class_a" / "grey16.png", np.full((20, 24), 1000, np.uint16))
    dm = ImageFolderDataModule(str(root), size=16, batch_size=2, num_workers=0, pin_memory=False)
    dm.setup("fit")
    index = next(i for i, (p, _) in enumerate(dm.train_set.folder.samples) if p == str(path))
    with pytest.raises(DatasetFormatError, match=f"{path}: .*16-bit greyscale PNG"):
        dm.train_set[index]


@pytest.mark.parametrize("label_type", ["labelIds", "labelTrainIds"])
def test_cityscapes_label_250_is_refused_naming_the_file(tmp_path, label_type):
    from vitlab.core.data import decode_cityscapes_label

    src = DATA / "cityscapes" / "gtFine" / "train" / "aachen" / f"aachen_000000_000009_gtFine_{label_type}.png"
    lab = np.asarray(Image.open(src)).copy()
    lab[3, 4] = 250
    path = tmp_path / src.name
    Image.fromarray(lab).save(path)
    expected = "0..33" if label_type == "labelIds" else "0..18"
    with pytest.raises(DatasetFormatError, match=rf"{path}: Cityscapes {label_type} map .* has value 250, "
                                                 rf"expected {expected} or 255 \(ignore\)"):
        decode_cityscapes_label(path, label_type)


def test_cityscapes_labels_without_a_train_class_warn_once(tmp_path):
    from vitlab.core.data import decode_cityscapes_label

    path = tmp_path / "void_gtFine_labelIds.png"
    Image.fromarray(np.full((8, 8), 1, np.uint8)).save(path)  # ego vehicle everywhere: no train id
    with pytest.warns(EmptyGroundTruthWarning, match=f"{path}: .* no valid pixel"):
        assert (decode_cityscapes_label(path, "labelIds") == 255).all()
    with warnings.catch_warnings():
        warnings.simplefilter("error", EmptyGroundTruthWarning)
        decode_cityscapes_label(path, "labelIds")


def test_real_samples_keep_their_contracts(shared_data):
    """No false alarms on the real files: each real sample reads through its registered reader."""
    from vitlab.core.data import decode_cityscapes_label, read_depth_png, read_kitti_disparity

    cs = shared_data / "cityscapes_mmseg_sample" / "gtFine" / "val" / "frankfurt"
    for label_type in ("labelIds", "labelTrainIds"):
        decode_cityscapes_label(cs / f"frankfurt_000000_000294_gtFine_{label_type}.png", label_type)
    read_depth_png(shared_data / "nyu_depth_v2_mmseg_sample" / "annotations" / "bookstore_0001d_00001.png")
    read_kitti_disparity(shared_data / "kitti2015" / "data_scene_flow" / "training" / "disp_occ_0" / "000000_10.png")
    for name in ("chelsea.png", "coffee.png"):
        t = vitlab.core.data.read_image_tensor(shared_data / "natural_images_skimage" / name, uint8=True)
        assert t.dtype == torch.uint8
