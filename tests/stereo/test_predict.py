"""Inference on user image pairs: globs / pairs files, any image format and size, the ``scale`` option, the
``predict_disparity`` call and ``vitlab predict`` with :class:`StereoPairsDataModule`."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F
from PIL import Image

from vitlab.core.cli import build_cli
from vitlab.core.data.constants import IMAGENET_MEAN, IMAGENET_STD
from vitlab.core.data.io import read_pfm
from vitlab.stereo import (
    StereoMatching,
    StereoPairsDataModule,
    predict_disparity,
    read_stereo_image,
    resolve_pairs,
    suggest_scale,
)

REPO = Path(__file__).resolve().parents[2]
NET = "--model.init_args.model.init_args."


def _rgb(h: int, w: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


def _write_pair(folder: Path, stem: str, h: int = 32, w: int = 48, seed: int = 0) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    Image.fromarray(_rgb(h, w, seed)).save(folder / f"{stem}_L.png")
    Image.fromarray(_rgb(h, w, seed + 1)).save(folder / f"{stem}_R.png")


@pytest.fixture
def tiny_module(tiny_net):
    torch.manual_seed(0)
    return StereoMatching(tiny_net(enc_depth=2)).eval()


def test_pairs_from_globs_and_from_a_pairs_file(tmp_path):
    for i, stem in enumerate(("b", "a", "c")):
        _write_pair(tmp_path / "imgs", stem, seed=2 * i)
    got = resolve_pairs(str(tmp_path / "imgs" / "*_L.png"), str(tmp_path / "imgs" / "*_R.png"))
    assert [n for n, _, _ in got] == ["a_L", "b_L", "c_L"]  # sorted, named after the left image
    assert [(lp.name, rp.name) for _, lp, rp in got] == [("a_L.png", "a_R.png"), ("b_L.png", "b_R.png"),
                                                         ("c_L.png", "c_R.png")]
    lst = tmp_path / "lists" / "pairs.txt"
    lst.parent.mkdir()
    lst.write_text("# left right\n../imgs/c_L.png   ../imgs/c_R.png\n\n../imgs/a_L.png\t../imgs/a_R.png\n")
    got = resolve_pairs(pairs=str(lst))
    assert [(n, lp.resolve(), rp.resolve()) for n, lp, rp in got] == [
        ("c_L", (tmp_path / "imgs/c_L.png").resolve(), (tmp_path / "imgs/c_R.png").resolve()),
        ("a_L", (tmp_path / "imgs/a_L.png").resolve(), (tmp_path / "imgs/a_R.png").resolve())]
    dm = StereoPairsDataModule(pairs=str(lst), scale=0.5)
    batch = next(iter(dm.predict_dataloader()))
    assert batch["image"].shape == (1, 3, 32, 48) and batch["name"] == ["c_L"]
    assert torch.allclose(batch["image"][0], torch.from_numpy(_rgb(32, 48, 4)).permute(2, 0, 1).float() / 255)
    assert float(batch["scale"][0]) == 0.5


def test_errors_name_the_files(tmp_path):
    d = tmp_path / "imgs"
    _write_pair(d, "a")
    _write_pair(d, "b")
    Image.fromarray(_rgb(32, 48, 9)).save(d / "extra_L.png")
    with pytest.raises(ValueError, match=r"matches 3 files .* matches 2.*extra_L\.png"):
        resolve_pairs(str(d / "*_L.png"), str(d / "*_R.png"))
    # (no match, missing or malformed pairs-file lines: core list_image_pairs, tests/core/test_image_pairs.py)
    Image.fromarray(_rgb(32, 50, 3)).save(d / "b_R.png")
    with pytest.raises(ValueError, match=r"b_L\.png \(48x32\) and .*b_R\.png \(50x32\): left and right sizes differ"):
        StereoPairsDataModule(left=str(d / "[ab]_L.png"), right=str(d / "[ab]_R.png"))


def test_any_image_format_gives_full_size_float32(tmp_path, tiny_module):
    rng = np.random.default_rng(0)
    grey8 = rng.integers(0, 256, (37, 53), dtype=np.uint8)
    Image.fromarray(grey8).save(tmp_path / "g.png")
    Image.fromarray(grey8.astype(np.uint16) * 257).save(tmp_path / "g16.png")  # 16-bit greyscale PNG
    rgba = np.concatenate([_rgb(37, 53, 1), np.full((37, 53, 1), 7, np.uint8)], axis=-1)
    Image.fromarray(rgba, "RGBA").save(tmp_path / "rgba.png")
    g8, g16 = read_stereo_image(tmp_path / "g.png"), read_stereo_image(tmp_path / "g16.png")
    assert g8.shape == (3, 37, 53) and torch.equal(g8[0], g8[2])  # grey replicated
    assert torch.allclose(g8, g16, atol=1e-6)  # v * 257 / 65535 == v / 255
    assert torch.allclose(read_stereo_image(tmp_path / "rgba.png") * 255, torch.from_numpy(rgba[..., :3]).permute(
        2, 0, 1).float(), atol=1e-4)  # alpha dropped
    for left, right in [(tmp_path / "g.png", tmp_path / "g16.png"), (tmp_path / "rgba.png", tmp_path / "g.png"),
                        (Image.open(tmp_path / "g.png"), grey8), (_rgb(37, 53, 2), torch.from_numpy(
                            _rgb(37, 53, 3)).permute(2, 0, 1))]:
        d = predict_disparity(tiny_module, left, right)
        assert d.shape == (37, 53) and d.dtype == np.float32 and np.isfinite(d).all()
    d_tiled = predict_disparity(tiny_module, tmp_path / "g.png", tmp_path / "g16.png", tiled=True)
    assert d_tiled.shape == (37, 53) and np.isfinite(d_tiled).all()
    with pytest.raises(ValueError, match="differ in size"):
        predict_disparity(tiny_module, grey8, _rgb(36, 53, 0))


class _WidthNet(nn.Module):
    """Disparity = the width of the frame it is given (plus 1 in the first row), confidence 0."""

    def forward(self, left, right):
        B, _, H, W = left.shape
        d = torch.full((B, 1, H, W), float(W))
        return torch.cat([d, torch.zeros_like(d)], 1)


def test_scale_resizes_back_and_multiplies_the_disparity(tiny_module):
    mod = StereoMatching(_WidthNet())
    left, right = _rgb(64, 128, 0), _rgb(64, 128, 1)
    assert np.allclose(predict_disparity(mod, left, right), 128.0)
    d = predict_disparity(mod, left, right, scale=0.5)  # net sees 32 x 64 -> says 64 px -> 128 at full size
    assert d.shape == (64, 128) and np.allclose(d, 128.0)
    # a real network: the same as running it on the antialiased half-size pair and upsampling x2 by hand
    mean, std = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)
    lt, rt = (((torch.from_numpy(a).permute(2, 0, 1)[None].float() / 255) - mean) / std for a in (left, right))
    small = [F.interpolate(x, size=(32, 64), mode="bilinear", antialias=True, align_corners=False) for x in (lt, rt)]
    with torch.no_grad():
        ref = F.interpolate(tiny_module.net(*small)[:, :1], size=(64, 128), mode="bilinear", align_corners=False) * 2
    got = predict_disparity(tiny_module, left, right, scale=0.5)
    assert got.shape == (64, 128)
    assert np.allclose(got, ref[0, 0].numpy(), atol=1e-4)
    assert suggest_scale(48, 192) == 0.25 and suggest_scale(48, 20) == 1.0


def test_vitlab_predict_on_a_folder_of_pairs(tmp_path):
    for i, (stem, h, w) in enumerate((("x", 37, 53), ("y", 32, 48))):
        _write_pair(tmp_path / "imgs", stem, h, w, seed=2 * i)
    cli = build_cli([
        "predict", "--config", str(REPO / "configs/stereo/quickstart.yaml"),
        "--trainer.accelerator", "cpu",
        "--trainer.default_root_dir", str(tmp_path / "runs"),
        NET + "enc_embed_dim", "32", NET + "enc_depth", "2", NET + "enc_num_heads", "2",
        NET + "dec_embed_dim", "32", NET + "dec_depth", "2", NET + "dec_num_heads", "2",
        NET + "layer_dims", "[16, 16, 32, 32]", NET + "feature_dim", "16", NET + "last_dim", "8",
        "--data", "vitlab.stereo.StereoPairsDataModule",
        "--data.left", str(tmp_path / "imgs" / "*_L.png"), "--data.right", str(tmp_path / "imgs" / "*_R.png"),
        "--data.scale", "0.5",  # batch_size 16 is carried over from the config: pairs of two sizes go one by one
    ])
    out = Path(cli.trainer.default_root_dir) / "predictions"
    assert sorted(p.name for p in out.glob("*.pfm")) == ["x_L.pfm", "y_L.pfm"]
    assert read_pfm(out / "x_L.pfm").shape == (37, 53) and read_pfm(out / "y_L.pfm").shape == (32, 48)
    assert (out / "x_L_kitti.png").is_file() and (out / "x_L_color.png").is_file()
    # the CLI applied the same scale as the Python call on the same weights
    ref = predict_disparity(cli.model, tmp_path / "imgs" / "x_L.png", tmp_path / "imgs" / "x_R.png", scale=0.5)
    assert np.allclose(read_pfm(out / "x_L.pfm"), ref, atol=1e-4)
    assert not np.allclose(ref, predict_disparity(cli.model, tmp_path / "imgs" / "x_L.png",
                                                  tmp_path / "imgs" / "x_R.png"), atol=1e-3)


def test_predict_and_tasks_do_not_import_each_other():
    """The inference geometry (padding, scale, tiles) lives in ``tiling``; neither module imports the other,
    at the top or inside a function."""
    import ast

    src = REPO / "packages" / "stereo" / "src" / "vitlab" / "stereo"

    def imports(name: str) -> set[str]:
        found = set()
        for node in ast.walk(ast.parse((src / f"{name}.py").read_text())):
            if isinstance(node, ast.ImportFrom):
                mod = node.module or ""
                found.add(mod.rsplit(".", 1)[-1] if node.level == 0 and mod.startswith("vitlab.stereo.") else mod)
                found.update(a.name for a in node.names if node.level and not mod)  # from . import x
            elif isinstance(node, ast.Import):
                found.update(a.name.rsplit(".", 1)[-1] for a in node.names if a.name.startswith("vitlab.stereo."))
        return found

    assert "tasks" not in imports("predict"), imports("predict")
    assert "predict" not in imports("tasks"), imports("tasks")
    assert "tiling" in imports("predict") or "tiling" in imports("tasks")
