"""Every DataModule of every installed vitlab package keeps the guarantees of the one base class.

The classes are discovered (every ``LightningDataModule`` subclass defined in a ``vitlab.*`` module), so a
DataModule added to any package is covered the day it lands: :func:`test_every_datamodule_has_a_tiny_instance`
fails until :data:`TINY` knows how to build it on tiny real-format fixtures. For each one:

* it derives from :class:`vitlab.core.data.VitlabDataModule`;
* its loaders are built by core's factory (``make_loader``: epoch-seeded sampler, seeded samples) and images leave the
  workers as uint8, reaching the model as ImageNet-normalised float32;
* a fit saved at a step in the middle of an epoch, restored in a new process state (other global RNG, other number of
  workers for the augmenting ones), sees exactly the remaining batches of the uninterrupted run and ends with the
  same weights (bit-exact).
"""

from __future__ import annotations

import hashlib
import importlib
import inspect
import pkgutil
from collections.abc import Callable
from pathlib import Path

import lightning.pytorch as pl
import numpy as np
import pytest
import torch
from lightning.pytorch import Callback, LightningDataModule, LightningModule, Trainer
from torch.utils.data import Dataset

import vitlab
from vitlab.core.cli import load_plugins
from vitlab.core.data import EpochShuffleSampler, SeededSamples, VitlabDataModule

REPO = Path(__file__).resolve().parents[1]
DATA = REPO / "tests" / "data"


def _discover() -> list[type]:
    load_plugins()
    found: dict[str, type] = {}
    for info in pkgutil.walk_packages(vitlab.__path__, "vitlab."):
        if info.name.startswith("vitlab.core.cli") or ".__main__" in info.name:
            continue
        try:
            module = importlib.import_module(info.name)
        except ImportError:  # an optional dependency of a module that is not part of a DataModule
            continue
        for _, obj in inspect.getmembers(module, inspect.isclass):
            if issubclass(obj, LightningDataModule) and obj.__module__.startswith("vitlab.") \
                    and not vars(obj).get("abstract", False):
                found[f"{obj.__module__}.{obj.__qualname__}"] = obj
    return [found[k] for k in sorted(found)]


def _stereo_pairs(tmp: Path):
    from vitlab.stereo import SceneFlowStereo

    return SceneFlowStereo(str(DATA / "sceneflow"), split="test")


def _image_pairs(tmp: Path) -> dict:
    rng = np.random.default_rng(0)
    from PIL import Image

    for i in range(4):
        img = rng.integers(0, 255, (40, 56, 3), dtype=np.uint8)
        Image.fromarray(img).save(tmp / f"{i}_L.png")
        Image.fromarray(np.roll(img, 3, axis=1)).save(tmp / f"{i}_R.png")
    return dict(left=str(tmp / "*_L.png"), right=str(tmp / "*_R.png"), size=32, batch_size=1, num_workers=0)


def _image_folder(tmp: Path) -> dict:
    from PIL import Image

    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 255, (40, 56, 3), dtype=np.uint8)).save(tmp / "a.png")
    Image.fromarray(rng.integers(0, 255, (30, 20), dtype=np.uint8)).save(tmp / "b.jpg")
    return dict(images=str(tmp), size=32, batch_size=2)


#: how to build each DataModule class on tiny data: name -> (kwargs factory, has a training split)
TINY: dict[str, tuple[Callable[[Path], dict], bool]] = {
    "vitlab.core.data.synthetic_datamodules.SyntheticScenesDataModule": (lambda t: dict(
        modalities=["image", "semantic"], size=32, batch_size=2, train_samples=6, val_samples=2), True),
    "vitlab.core.data.synthetic_datamodules.SyntheticStereoDataModule": (lambda t: dict(
        size=(32, 64), batch_size=2, train_samples=6, val_samples=2), True),
    "vitlab.core.data.dense.ADE20KDataModule": (lambda t: dict(
        root=str(DATA / "ade20k" / "ADEChallengeData2016"), size=32, batch_size=1, num_workers=0,
        scale=(128, 32), eval_scale=(64, 32)), True),
    "vitlab.core.data.dense.CityscapesDataModule": (lambda t: dict(
        root=str(DATA / "cityscapes"), size=(16, 32), batch_size=1, num_workers=0, scale=(64, 32),
        eval_scale=None), True),
    "vitlab.core.data.dense.NYUDepthDataModule": (lambda t: dict(
        root=str(DATA / "nyu"), size=(16, 24), batch_size=1, num_workers=0), True),
    "vitlab.core.data.folders.FolderSegmentationDataModule": (lambda t: dict(
        root=str(DATA / "segfolder" / "source"), size=32, batch_size=2, num_workers=0, scale=(64, 48),
        eval_scale=(64, 48)), True),
    "vitlab.core.data.imagefolder.ImageFolderDataModule": (lambda t: dict(
        root=str(DATA / "imagefolder"), size=32, batch_size=2, num_workers=0), True),
    "vitlab.core.data.pairs.ImagePairDataModule": (_image_pairs, True),
    "vitlab.core.data.predict.ImageFolderPredictDataModule": (_image_folder, False),
    "vitlab.pretrain.data.PseudoDepthFolderDataModule": (lambda t: dict(
        root=str(DATA / "multimae"), size=32, batch_size=2, num_workers=0), True),
    "vitlab.stereo.data.StereoDataModule": (lambda t: dict(
        train_datasets=[_stereo_pairs(t)], train_repeats=[2], crop_size=[32, 64], batch_size=1, num_workers=0),
        True),
    "vitlab.stereo.predict.StereoPairsDataModule": (lambda t: dict(
        left=_image_pairs(t)["left"], right=str(t / "*_R.png")), False),
    # a test-only protocol: its tiny instance is checked on the test split
    "vitlab.stereo.benchmark.ZeroShotStereoDataModule": (lambda t: dict(
        kitti2015=str(DATA / "kitti2015" / "data_scene_flow"), max_pairs=2), "test"),
    "vitlab.mtl.data.SyntheticMultiTaskDataModule": (lambda t: dict(
        size=32, batch_size=2, train_samples=6, val_samples=2), True),
    "vitlab.mtl.data.PASCALContextMTDataModule": (lambda t: dict(
        root=str(DATA / "pascal_context" / "PASCAL_MT"), size=32, batch_size=1, num_workers=0), True),
    "vitlab.mtl.data.NYUDMTDataModule": (lambda t: dict(
        root=str(DATA / "nyud_mt" / "NYUD_MT"), size=(16, 24), batch_size=1, num_workers=0, split_sizes={}), True),
    "vitlab.uda.data.UDADataModule": (lambda t: dict(
        source="gta5", source_root=str(DATA / "gta5"), target_root=str(DATA / "cityscapes"), crop_size=32,
        source_scale=(80, 48), target_scale=(64, 32), batch_size=1, num_workers=0, rcs=False), True),
}

CLASSES = _discover()
IDS = [f"{c.__module__}.{c.__qualname__}" for c in CLASSES]


def test_discovery_sees_every_package():
    packages = {name.split(".")[1] for name in IDS}
    assert {"core", "pretrain", "stereo", "mtl", "uda"} <= packages, packages


def test_every_datamodule_has_a_tiny_instance():
    missing = [name for name in IDS if name not in TINY]
    stale = [name for name in TINY if name not in IDS]
    assert not missing, f"DataModules without a tiny instance in tests/test_datamodules.py TINY: {missing}"
    assert not stale, f"TINY lists DataModules that do not exist: {stale}"


def _build(name: str, tmp_path: Path, **override) -> VitlabDataModule:
    cls = CLASSES[IDS.index(name)]
    kwargs, _ = TINY[name]
    return cls(**{**kwargs(tmp_path), **override})


@pytest.mark.parametrize("name", IDS)
def test_derives_from_the_base_and_sends_uint8_images(name, tmp_path):
    cls = CLASSES[IDS.index(name)]
    assert issubclass(cls, VitlabDataModule), f"{name} does not derive from vitlab.core.data.VitlabDataModule"
    if name not in TINY:
        pytest.skip("no tiny instance (see test_every_datamodule_has_a_tiny_instance)")
    dm = _build(name, tmp_path)
    has_train = TINY[name][1] is True
    stage = {True: "fit", False: "predict"}.get(TINY[name][1], TINY[name][1])
    dm.setup(stage)
    loader = dm.train_dataloader() if has_train else getattr(dm, f"{stage}_dataloader")()
    loader = loader[0] if isinstance(loader, (list, tuple)) else loader  # one loader per benchmark
    loaders = list(loader.iterables.values()) if hasattr(loader, "iterables") else [loader]
    for dl in loaders:
        assert isinstance(dl.dataset, SeededSamples), f"{name}: loader not built by VitlabDataModule.loader"
        if has_train:
            assert isinstance(dl.sampler, EpochShuffleSampler) and dl.sampler.with_epoch and dl.drop_last
    raw = next(iter(loader))
    raw = raw[0] if isinstance(raw, tuple) else raw  # a CombinedLoader yields (batch, batch_idx, loader_idx)
    subs = list(raw.values()) if all(isinstance(v, dict) for v in raw.values()) else [raw]
    images = [(k, sub[k]) for sub in subs for k in dm.image_keys if k in sub]
    assert images, f"{name}: no image key {dm.image_keys} in the batch keys {sorted(raw)}"
    if dm.uint8_transfer:
        assert all(v.dtype == torch.uint8 for _, v in images), f"{name}: images do not leave the workers as uint8"
    out = dm.on_after_batch_transfer(raw, 0)
    subs = list(out.values()) if all(isinstance(v, dict) for v in out.values()) else [out]
    for sub in subs:
        for k in dm.image_keys:
            if k in sub:
                assert sub[k].dtype == torch.float32 and sub[k].min() < 0, f"{name}: {k} not normalised"


# ------------------------------------------------------------------------------------------------ exact resume
def _tensors(x, out: list) -> list:
    if isinstance(x, torch.Tensor):
        out.append(x)
    elif isinstance(x, dict):
        for k in sorted(x):
            _tensors(x[k], out)
    elif isinstance(x, (list, tuple)):
        for v in x:
            _tensors(v, out)
    return out


def _digest(batch) -> str:
    h = hashlib.sha256()
    for t in _tensors(batch, []):
        h.update(t.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()


class Recorder(LightningModule):
    """Records every training batch; its one weight follows the batches' contents and order."""

    def __init__(self) -> None:
        super().__init__()
        self.w = torch.nn.Parameter(torch.zeros(()))
        self.digests: list[str] = []

    def training_step(self, batch, batch_idx):
        self.digests.append(_digest(batch))
        floats = [t.double().nan_to_num(posinf=0.0).mean() for t in _tensors(batch, []) if t.is_floating_point()]
        target = torch.stack(floats).sum().float()
        return (self.w - target) ** 2 * (1 + self.global_step)

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.05)


class _Stop(Exception):
    pass


class StopAfter(Callback):
    def __init__(self, step: int) -> None:
        self.step = step

    def on_train_batch_end(self, trainer, *args) -> None:
        if trainer.global_step == self.step:
            raise _Stop


def _trainer(root: Path, steps: int, *callbacks) -> Trainer:
    return Trainer(max_steps=steps, accelerator="cpu", devices=1, logger=False, enable_progress_bar=False,
                   enable_model_summary=False, limit_val_batches=0, num_sanity_val_steps=0, default_root_dir=root,
                   callbacks=list(callbacks), deterministic=True)


#: DataModules whose training samples are augmented at random: their resume also switches to a worker process
AUGMENTING = {"vitlab.core.data.dense.ADE20KDataModule", "vitlab.uda.data.UDADataModule",
              "vitlab.stereo.data.StereoDataModule"}


@pytest.mark.parametrize("name", [n for n in IDS if TINY.get(n, (None, False))[1] is True])
def test_mid_epoch_resume_is_exact(name, tmp_path):
    from vitlab.core import ModelCheckpoint

    dm = _build(name, tmp_path)
    dm.setup("fit")
    per_epoch = len(dm.train_dataloader())
    assert per_epoch >= 2, f"{name}: the tiny instance needs at least 2 training batches per epoch"
    save_at, total = per_epoch + 1, 2 * per_epoch  # the checkpoint is one batch into the second epoch

    pl.seed_everything(1)
    straight = Recorder()
    _trainer(tmp_path / "a", total).fit(straight, datamodule=_build(name, tmp_path))

    pl.seed_everything(1)
    first = Recorder()
    ckpts = tmp_path / "b"
    saver = ModelCheckpoint(dirpath=ckpts, every_n_train_steps=save_at, save_top_k=-1, filename="step{step}")
    with pytest.raises(_Stop):
        _trainer(tmp_path / "b", total, saver, StopAfter(save_at + 1)).fit(first, datamodule=_build(name, tmp_path))
    ckpt = next(ckpts.glob(f"step*{save_at}*.ckpt"))

    pl.seed_everything(99)  # another global RNG state: the data must not depend on it
    torch.rand(7)
    workers = 1 if name in AUGMENTING else 0
    resumed = Recorder()
    _trainer(tmp_path / "c", total).fit(resumed, datamodule=_build(name, tmp_path, num_workers=workers),
                                        ckpt_path=ckpt)
    assert first.digests[:save_at] == straight.digests[:save_at]
    assert resumed.digests == straight.digests[save_at:], f"{name}: the resumed run saw other batches"
    assert torch.equal(resumed.w, straight.w), f"{name}: final weights differ after a mid-epoch resume"


def test_per_sample_draws_do_not_depend_on_workers_or_the_global_rng(tmp_path):
    """The augmentation of a sample is a function of (seed, epoch, index) only."""
    name = "vitlab.core.data.dense.ADE20KDataModule"
    batches = []
    for workers, seed in ((0, 0), (2, 5)):
        torch.manual_seed(seed)
        dm = _build(name, tmp_path, num_workers=workers, batch_size=2)
        dm.setup("fit")
        batches.append([_digest(b) for b in dm.train_dataloader()])
    assert batches[0] == batches[1]


class _Random(Dataset):
    def __len__(self) -> int:
        return 4

    def __getitem__(self, i):
        return {"image": torch.rand(3, 2, 2), "noise": torch.tensor(np.random.rand())}


def test_loading_never_moves_the_training_loops_random_streams():
    class DM(VitlabDataModule):
        def make_dataset(self, split):
            return _Random() if split == "train" else None

    dm = DM(batch_size=2)
    torch.manual_seed(3)
    np.random.seed(3)
    before = torch.get_rng_state(), np.random.get_state()[1].copy()
    list(dm.train_dataloader())
    assert torch.equal(torch.get_rng_state(), before[0]) and (np.random.get_state()[1] == before[1]).all()
