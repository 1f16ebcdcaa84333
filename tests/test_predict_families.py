"""`vitlab predict` writes files for every model family, on a folder of one's own images.

One case per package config folder with a ``quickstart.yaml`` (so a new package is covered the day it lands):
fit the quickstart for 2 steps through the CLI (its logger on, W&B offline), then ``vitlab predict`` with the
written checkpoint on a folder of PNG/JPEG images of different sizes (core's ``ImageFolderPredictDataModule``;
stereo: left/right pairs through ``StereoPairsDataModule``), and check the files the module's default writer
wrote: at each image's own size, with the documented dtypes. A module that declares no writer must stop
``predict`` with the one-line error instead.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from PIL import Image

from vitlab.core import predict_image
from vitlab.core.cli import _class_of, build_cli, load_plugins

REPO = Path(__file__).resolve().parents[1]
FAMILIES = sorted(d.name for d in (REPO / "configs").iterdir() if (d / "quickstart.yaml").is_file()
                  and (REPO / "packages" / d.name).is_dir())
#: (H, W) of the images on disk: odd sizes, one greyscale JPEG
SIZES = {"a.png": (37, 53), "b.jpg": (48, 30), "c.png": (64, 64)}


def _data_init(config: Path) -> dict:
    return dict(yaml.safe_load(config.read_text())["data"].get("init_args") or {})


def _model_class(config: Path) -> type:
    load_plugins()
    return _class_of(yaml.safe_load(config.read_text())["model"])


def _images(folder: Path, stereo: bool) -> Path:
    rng = np.random.default_rng(0)
    folder.mkdir()
    for name, (h, w) in SIZES.items():
        img = rng.integers(0, 255, (h, w, 3), dtype=np.uint8)
        stem, ext = name.split(".")
        if stereo:
            Image.fromarray(img).save(folder / f"{stem}_L.{ext}")
            Image.fromarray(np.roll(img, 2, axis=1)).save(folder / f"{stem}_R.{ext}")
        elif ext == "jpg":
            Image.fromarray(img[..., 0]).save(folder / name)  # greyscale JPEG
        else:
            Image.fromarray(img).save(folder / name)
    return folder


def _fit(config: Path, root: Path) -> list[str]:
    data = _data_init(config)
    bs = min(2, int(data.get("batch_size", 2)))
    args = ["fit", "--config", str(config), "--trainer.max_steps", "2",
            "--trainer.limit_val_batches", "1", "--trainer.num_sanity_val_steps", "0",
            "--trainer.accelerator", "cpu", "--trainer.devices", "1", "--trainer.accumulate_grad_batches", "1",
            "--trainer.enable_model_summary", "false", "--trainer.default_root_dir", str(root),
            "--data.init_args.batch_size", str(bs), "--data.init_args.train_samples", str(2 * bs),
            "--data.init_args.val_samples", str(bs)]
    if "num_workers" in data:
        args += ["--data.init_args.num_workers", "0"]
    return args


def _size(config: Path) -> list[int]:
    size = _data_init(config).get("size", 64)
    return [size, size] if isinstance(size, int) else list(size)


def _model_init(config: Path) -> dict:
    return dict(yaml.safe_load(config.read_text())["model"].get("init_args") or {})


def _check_files(family: str, out: Path, model: dict) -> None:
    def opened(path: Path) -> np.ndarray:
        assert path.is_file(), f"{path.name} not written (have {sorted(p.name for p in out.iterdir())})"
        return np.asarray(Image.open(path))

    for name, (h, w) in SIZES.items():
        stem = name.split(".")[0]
        if family == "stereo":
            from vitlab.core.data.io import read_kitti_disparity, read_pfm

            assert read_pfm(out / f"{stem}_L.pfm").shape == (h, w)
            assert read_kitti_disparity(out / f"{stem}_L_kitti.png").shape == (h, w)
            assert opened(out / f"{stem}_L_color.png").shape == (h, w, 3)
        elif family == "pretrain":
            for kind in ("masked", "recon", "recon_full"):
                assert opened(out / f"{stem}_{kind}.png").shape == (h, w, 3)
        elif family == "mtl":
            tasks = set(model["tasks"])
            for task in {"semseg", "human_parts"} & tasks:
                ids = opened(out / f"{stem}_{task}.png")
                assert ids.shape == (h, w) and ids.dtype == np.uint8
                colour = Image.open(out / f"{stem}_{task}_color.png")
                assert colour.mode == "P" and np.array_equal(np.asarray(colour), ids)
            for task in {"sal", "edge"} & tasks:
                assert opened(out / f"{stem}_{task}.png").dtype == np.uint8
            if "normals" not in tasks or "depth" not in tasks:
                continue
            normals = np.load(out / f"{stem}_normals.npy")
            assert normals.shape == (h, w, 3) and np.allclose(np.linalg.norm(normals, axis=-1), 1, atol=1e-4)
            assert opened(out / f"{stem}_normals.png").shape == (h, w, 3)
            mm = opened(out / f"{stem}_depth.png")
            assert mm.shape == (h, w) and mm.dtype == np.uint16
            np.testing.assert_allclose(mm / 1000.0, np.load(out / f"{stem}_depth.npy").clip(0), atol=6e-4)  # <0: 0
        else:  # core, peft, uda: segmentation
            ids = opened(out / f"{stem}.png")
            assert ids.shape == (h, w) and ids.dtype == np.uint8
            assert Image.open(out / f"{stem}_color.png").mode == "P"
            if family == "uda":  # label ids for the Cityscapes server only with its 19 classes
                assert (out / f"{stem}_labelIds.png").is_file() == (model.get("num_classes", 19) == 19)


@pytest.mark.parametrize("family", FAMILIES)
def test_predict_writes_files_on_a_folder_of_images(family, tmp_path, monkeypatch):
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.delenv("VITLAB_RUN_DIR", raising=False)
    config = REPO / "configs" / family / "quickstart.yaml"
    cls = _model_class(config)
    root = tmp_path / "runs"
    build_cli(_fit(config, root))
    ckpt = root / "version_0" / "checkpoints" / "last.ckpt"
    assert ckpt.is_file()
    monkeypatch.delenv("VITLAB_RUN_DIR", raising=False)
    stereo = family == "stereo"
    images = _images(tmp_path / "images", stereo)
    if stereo:
        data = ["--data", "vitlab.stereo.StereoPairsDataModule", "--data.left", str(images / "*_L.*"),
                "--data.right", str(images / "*_R.*")]
    else:
        data = ["--data", "vitlab.core.data.ImageFolderPredictDataModule", "--data.images", str(images),
                "--data.size", str(_size(config)), "--data.batch_size", "2"]
    predict = ["predict", "--config", str(config), "--ckpt_path", str(ckpt), "--trainer.accelerator", "cpu",
               "--trainer.devices", "1", "--trainer.default_root_dir", str(root), *data]
    if getattr(cls, "default_writer", None) is None:
        with pytest.raises(ValueError, match=f"no prediction writer for {cls.__name__}"):
            build_cli(predict)
        return
    build_cli(predict)
    outs = [p for p in root.rglob("predictions") if p.is_dir() and any(p.iterdir())]
    assert len(outs) == 1, outs
    _check_files(family, outs[0], _model_init(config))
    if not stereo and family != "pretrain":  # the Python helper: the same maps as the files
        out = predict_image(ckpt, images / "a.png", size=_size(config))
        key = {"mtl": "semseg"}.get(family, "semantic")
        stem = "a_semseg" if family == "mtl" else "a"
        assert out[key].shape == SIZES["a.png"]
        np.testing.assert_array_equal(out[key], np.asarray(Image.open(outs[0] / f"{stem}.png")))
        assert torch.is_grad_enabled()


def test_uda_writer_maps_train_ids_to_cityscapes_label_ids(tmp_path):
    from types import SimpleNamespace

    from vitlab.core.data import CITYSCAPES_LABEL_TO_TRAIN_ID, CITYSCAPES_PALETTE
    from vitlab.uda.writer import UDAPredictionWriter

    writer = UDAPredictionWriter(output_dir=str(tmp_path))
    module = SimpleNamespace(num_classes=19)
    writer.on_predict_start(None, module)
    ids = torch.arange(19).repeat(2, 1)[:, None, :].expand(2, 3, 19)  # (B, H, W)
    batch = {"name": ["x", "y"], "orig_size": torch.tensor([[3, 19], [6, 38]])}
    writer.write_on_batch_end(None, module, {"semantic": ids}, None, batch, 0)
    label_of = {t: k for k, t in CITYSCAPES_LABEL_TO_TRAIN_ID.items()}
    assert np.asarray(Image.open(tmp_path / "x_labelIds.png"))[0].tolist() == [label_of[t] for t in range(19)]
    y = np.asarray(Image.open(tmp_path / "y.png"))
    assert y.shape == (6, 38) and y[0, ::2].tolist() == list(range(19))  # nearest, at the input size
    colour = Image.open(tmp_path / "x_color.png")
    assert np.array_equal(np.asarray(colour.convert("RGB"))[0], CITYSCAPES_PALETTE)


def test_image_folder_bad_input_is_one_line_naming_it(tmp_path):
    from vitlab.core.data import DatasetFormatError, ImageFolderPredictDataModule
    from vitlab.core.errors import ConfigError

    with pytest.raises(ConfigError, match="nowhere: no image files"):
        ImageFolderPredictDataModule(images=str(tmp_path / "nowhere")).setup("predict")
    (tmp_path / "bad.png").write_text("not a png")
    with pytest.raises(DatasetFormatError, match="bad.png: cannot read"):
        ImageFolderPredictDataModule(images=str(tmp_path)).setup("predict")
    Image.fromarray(np.zeros((5, 7, 3), np.uint8)).save(tmp_path / "ok.png")
    with pytest.raises(ConfigError, match="`size` must be a positive int"):
        ImageFolderPredictDataModule(images=str(tmp_path / "ok.png"), size=[0, 3]).setup("predict")
    dm = ImageFolderPredictDataModule(images=str(tmp_path / "*.png"), size=None)
    with pytest.raises(DatasetFormatError):  # a glob that takes the broken file in too
        dm.setup("predict")


def test_every_module_class_declares_a_writer_that_imports():
    """Every vitlab LightningModule names an importable writer."""
    import importlib
    import inspect
    import pkgutil

    from lightning.pytorch.callbacks import BasePredictionWriter

    import vitlab
    from vitlab.core import VitlabModule
    from vitlab.core.cli import _import_class

    load_plugins()
    found = {}
    for info in pkgutil.walk_packages(vitlab.__path__, "vitlab."):
        if info.name.startswith("vitlab.core.cli") or ".__main__" in info.name:
            continue
        try:
            module = importlib.import_module(info.name)
        except ImportError:
            continue
        for _, obj in inspect.getmembers(module, inspect.isclass):
            if issubclass(obj, VitlabModule) and obj.__module__.startswith("vitlab.") and obj is not VitlabModule:
                found[f"{obj.__module__}.{obj.__qualname__}"] = obj
    assert {"core", "stereo", "mtl", "uda", "pretrain"} <= {n.split(".")[1] for n in found}
    missing = [n for n, c in found.items() if c.default_writer is None and n != "vitlab.core.tasks.base.BackboneTask"]
    assert not missing, f"module classes without a default_writer: {missing}"
    for n, c in found.items():
        if c.default_writer is not None:
            w = _import_class(c.default_writer)
            assert isinstance(w, type) and issubclass(w, BasePredictionWriter), f"{n}: {c.default_writer}"
