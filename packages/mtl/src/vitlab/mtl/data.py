"""Multi-task data: PASCAL-Context MT and NYUD-v2 MT in their on-disk layouts, and synthetic multi-task scenes.

Label logic follows MTI-Net's loaders (`SimonVandenhende/Multi-Task-Learning-PyTorch`, also used by MTLoRA and
TADFormer); the code here is a re-implementation.

Every sample is a dict: ``image`` (3, H, W) float in [0, 1] (ImageNet-normalised on the device by the
DataModule), ``name`` (the image id) and one key per task: ``semseg``/``human_parts`` (H, W) int64 with 255
ignored, ``sal``/``edge`` (1, H, W) float in {0, 1}, ``normals`` (3, H, W) (zero vector = invalid), ``depth``
(1, H, W) metres (0 = invalid).

Augmentation (``augmentation``):

* ``"mtinet"`` (MTI-Net / MTLoRA / TADFormer): horizontal flip (normals' x negated) + ScaleNRotate (rotation
  ±20°, scale 0.75-1.25, about the centre, out-of-image pixels ignored) + FixedResize to ``size``. As in that
  code the normal vectors are warped as an image, not rotated.
* ``"invpt"`` (ATRC / InvPT): random scaling [0.5, 2] + random crop to ``size`` (padding ignored) + flip +
  photometric distortion (core's :class:`~vitlab.core.data.PhotometricDistortion`; with the DataModules'
  ``photometric_on_device`` the same law runs per training batch on the device instead,
  :class:`~vitlab.core.data.BatchPhotometricDistortion`).
* ``"none"``: FixedResize only (evaluation always uses FixedResize to ``size``).

Targets are resampled with nearest neighbour, the image bilinearly.
"""

from __future__ import annotations

import json
import math
import random
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor
from torch.utils.data import DataLoader, Dataset

from vitlab.core.data import (
    BatchPhotometricDistortion,
    DatasetFormatError,
    EpochShuffleSampler,
    PhotometricDistortion,
    SyntheticScenesDataModule,
    imagenet_normalize,
    read_image,
    read_label_png,
)
from vitlab.core.data.constants import IGNORE_INDEX

__all__ = [
    "AUGMENTATIONS",
    "NYUDMT",
    "PASCALContextMT",
    "PASCAL_PART_MAPPING",
    "MultiTaskDataModule",
    "MultiTaskTransform",
    "NYUDMTDataModule",
    "PASCALContextMTDataModule",
    "SyntheticMultiTaskDataModule",
    "pascal_edges",
]

AUGMENTATIONS = ("mtinet", "invpt", "none")

#: PASCAL-Part person part names → the 6 MTI-Net part classes (0 = background)
PASCAL_PART_MAPPING = {
    "hair": 1, "head": 1, "lear": 1, "rear": 1, "lebrow": 1, "rebrow": 1, "leye": 1, "reye": 1, "mouth": 1,
    "nose": 1, "torso": 2, "neck": 2, "luarm": 3, "ruarm": 3, "llarm": 4, "rlarm": 4, "lhand": 4, "rhand": 4,
    "luleg": 5, "ruleg": 5, "llleg": 6, "rlleg": 6, "lfoot": 6, "rfoot": 6,
}
PERSON_CLASS = 15

_PASCAL_LAYOUT = """PASCAL_MT/
  JPEGImages/<id>.jpg
  ImageSets/Context/{train,val}.txt
  semseg/VOC12/<id>.png or semseg/pascal-context/<id>.png   (uint8, 0..20, 255 ignore)
  pascal-context/trainval/<id>.mat                          (key 'LabelMap')
  human_parts/<id>.mat                                      (PASCAL-Part 'anno'; absent = no person)
  normals_distill/<id>.png   sal_distill/<id>.png
  db_info/{context_classes.json, nyu_classes.json}          (normals class mask; or pass db_info=...)"""

_NYUD_LAYOUT = """NYUD_MT/
  images/<id>.jpg (or .png)   segmentation/<id>.png   depth/<id>.npy (metres)
  normals/<id>.npy ([-1, 1], HxWx3)   edge/<id>.npy   gt_sets/{train,val}.txt"""


def _loadmat(path: Path, key: str) -> Any:
    from scipy.io import loadmat

    if not path.is_file():
        raise FileNotFoundError(f"{path}: file not found (expected a MATLAB .mat file with key {key!r})")
    try:
        mat = loadmat(str(path))
    except Exception as e:  # scipy raises ValueError/TypeError/MatReadError on bad files
        raise DatasetFormatError(f"{path}: cannot read as a MATLAB .mat file ({e})") from e
    if key not in mat:
        raise DatasetFormatError(f"{path}: has no key {key!r} (keys: {sorted(k for k in mat if not k.startswith('__'))})")
    return mat[key]


def pascal_edges(label_map: np.ndarray) -> np.ndarray:
    """``thin(|Laplacian(LabelMap)| > 0)`` (4-neighbour Laplacian, reflect-101 border as cv2's default)."""
    from scipy.ndimage import convolve
    from skimage.morphology import thin

    kernel = np.array([[0, 1, 0], [1, -4, 1], [0, 1, 0]], np.float64)
    lap = convolve(label_map.astype(np.float64), kernel, mode="mirror")
    return thin(np.abs(lap) > 0).astype(np.float32)


def _read_split(path: Path, layout: str) -> list[str]:
    if not path.is_file():
        raise FileNotFoundError(f"{path}: split file not found; expected the layout\n{layout}")
    ids = [ln.strip() for ln in path.read_text().splitlines() if ln.strip()]
    if not ids:
        raise DatasetFormatError(f"{path}: split file is empty")
    return ids


class PASCALContextMT(Dataset):
    """PASCAL-Context multi-task split (the "PASCAL_MT" archive of ASTMT/MTI-Net) as raw numpy targets.

    Args:
        root: the ``PASCAL_MT`` folder.
        split: ``train`` or ``val`` (``ImageSets/Context/<split>.txt``).
        tasks: any of ``semseg``, ``human_parts``, ``sal``, ``normals``, ``edge``.
        db_info: folder with ``context_classes.json`` (PASCAL-Context name → LabelMap id) and
            ``nyu_classes.json`` (NYU class names) defining the normals class mask; default ``<root>/db_info``.
        transform: callable on the sample dict.

    Targets: semseg 21 classes (VOC12 file wins over pascal-context); human_parts 7 (MTI-Net's 6-part mapping
    of person objects, all 255 when the image has no person part); sal ``v/255 > 0.5``; normals ``2v/255 - 1``
    kept only where LabelMap's class is in (NYU ∩ Context) ∪ {tvmonitor}; edge ``thin(|Laplacian(LabelMap)|>0)``.
    """

    TASKS = ("semseg", "human_parts", "sal", "normals", "edge")

    def __init__(self, root: str, split: str = "train", tasks: list[str] | None = None, db_info: str | None = None,
                 transform: Any = None) -> None:
        self.root = Path(root)
        if not self.root.is_dir():
            raise FileNotFoundError(f"{self.root}: PASCAL-Context MT root not found; expected the layout\n{_PASCAL_LAYOUT}")
        self.tasks = list(tasks or ["semseg", "human_parts", "sal", "normals"])
        bad = [t for t in self.tasks if t not in self.TASKS]
        if bad:
            raise ValueError(f"PASCALContextMT: unknown tasks {bad}; expected a subset of {self.TASKS}")
        self.split = split
        self.ids = _read_split(self.root / "ImageSets" / "Context" / f"{split}.txt", _PASCAL_LAYOUT)
        self.transform = transform
        self.normals_classes: np.ndarray | None = None
        if "normals" in self.tasks:
            self.normals_classes = self._normals_classes(Path(db_info) if db_info else self.root / "db_info")

    @staticmethod
    def _normals_classes(db_info: Path) -> np.ndarray:
        files = [db_info / "context_classes.json", db_info / "nyu_classes.json"]
        for f in files:
            if not f.is_file():
                raise FileNotFoundError(f"{f}: not found; the PASCAL normals mask needs context_classes.json "
                                        "({name: LabelMap id}) and nyu_classes.json (NYU class names)")
        context = json.loads(files[0].read_text())
        nyu = json.loads(files[1].read_text())
        if not isinstance(context, dict) or "tvmonitor" not in context:
            raise DatasetFormatError(f"{files[0]}: expected a {{name: id}} dict that includes 'tvmonitor'")
        valid = [int(context[n]) for n in nyu if n in context and n != "unknown"]
        valid.append(int(context["tvmonitor"]))
        return np.array(sorted(set(valid)), np.int64)

    def __len__(self) -> int:
        return len(self.ids)

    def _semseg(self, name: str) -> np.ndarray:
        for sub in ("VOC12", "pascal-context"):
            p = self.root / "semseg" / sub / f"{name}.png"
            if p.is_file():
                return read_label_png(p).astype(np.int64)
        raise FileNotFoundError(f"{self.root / 'semseg'}: no VOC12/{name}.png or pascal-context/{name}.png")

    def _human_parts(self, name: str, shape: tuple[int, int]) -> np.ndarray:
        path = self.root / "human_parts" / f"{name}.mat"
        out = np.zeros(shape, np.int64)
        found = False
        if path.is_file():
            anno = _loadmat(path, "anno")
            try:
                objects = anno[0][0][1][0]
                for obj in objects:
                    if int(obj[1][0][0]) != PERSON_CLASS or obj[3].size == 0:
                        continue
                    for part in obj[3][0]:
                        pname = str(part[0][0])
                        if pname not in PASCAL_PART_MAPPING:
                            raise DatasetFormatError(f"{path}: unknown person part {pname!r}")
                        mask = np.asarray(part[1]).astype(bool)
                        if mask.shape != shape:
                            raise DatasetFormatError(f"{path}: part mask {mask.shape} != image {shape}")
                        out[mask] = PASCAL_PART_MAPPING[pname]
                        found = True
            except (IndexError, TypeError) as e:
                raise DatasetFormatError(f"{path}: not a PASCAL-Part annotation (anno[0][0][1][0] objects with "
                                         f"class, mask and parts): {e}") from e
        if not found:
            out[:] = IGNORE_INDEX
        return out

    def __getitem__(self, index: int) -> dict[str, Any]:
        name = self.ids[index]
        image = read_image(self.root / "JPEGImages" / f"{name}.jpg")
        h, w = image.shape[:2]
        sample: dict[str, Any] = {"name": name, "image": torch.from_numpy(image).permute(2, 0, 1).float() / 255.0}
        label_map = None
        if "normals" in self.tasks or "edge" in self.tasks:
            label_map = np.asarray(_loadmat(self.root / "pascal-context" / "trainval" / f"{name}.mat", "LabelMap"))
            if label_map.shape != (h, w):
                raise DatasetFormatError(f"LabelMap of {name}: shape {label_map.shape} != image {(h, w)}")
        for t in self.tasks:
            if t == "semseg":
                arr = torch.from_numpy(self._semseg(name))
            elif t == "human_parts":
                arr = torch.from_numpy(self._human_parts(name, (h, w)))
            elif t == "sal":
                sal = read_label_png(self.root / "sal_distill" / f"{name}.png").astype(np.float32) / 255.0
                arr = torch.from_numpy((sal > 0.5).astype(np.float32))[None]
            elif t == "normals":
                rgb = read_image(self.root / "normals_distill" / f"{name}.png").astype(np.float32)
                n = 2.0 * rgb / 255.0 - 1.0
                n = n * np.isin(label_map, self.normals_classes)[..., None]
                arr = torch.from_numpy(n).permute(2, 0, 1).contiguous()
            else:
                arr = torch.from_numpy(pascal_edges(label_map))[None]
            if arr.shape[-2:] != (h, w):
                raise DatasetFormatError(f"{name}: {t} target is {tuple(arr.shape[-2:])}, image is {(h, w)}")
            sample[t] = arr
        return self.transform(sample) if self.transform else sample


class NYUDMT(Dataset):
    """NYUD-v2 multi-task split ("NYUD_MT" of MTI-Net/ATRC).

    Args:
        root: the ``NYUD_MT`` folder.
        split: ``train`` or ``val`` (``gt_sets/<split>.txt``).
        tasks: any of ``semseg``, ``depth``, ``normals``, ``edge``.
        split_sizes: expected sample counts per split (standard 795 train / 654 val), checked on load; None skips.
        transform: callable on the sample dict.

    Targets: semseg 40 classes (0 = void → 255, else label − 1); depth in metres (0 = invalid); normals in
    [-1, 1]; edge as stored.
    """

    TASKS = ("semseg", "depth", "normals", "edge")

    def __init__(self, root: str, split: str = "train", tasks: list[str] | None = None,
                 split_sizes: dict[str, int] | None = None, transform: Any = None) -> None:
        self.root = Path(root)
        if not self.root.is_dir():
            raise FileNotFoundError(f"{self.root}: NYUD MT root not found; expected the layout\n{_NYUD_LAYOUT}")
        self.tasks = list(tasks or ["semseg", "depth", "normals"])
        bad = [t for t in self.tasks if t not in self.TASKS]
        if bad:
            raise ValueError(f"NYUDMT: unknown tasks {bad}; expected a subset of {self.TASKS}")
        self.ids = _read_split(self.root / "gt_sets" / f"{split}.txt", _NYUD_LAYOUT)
        if split_sizes is not None and split in split_sizes and len(self.ids) != split_sizes[split]:
            raise DatasetFormatError(f"{self.root / 'gt_sets' / f'{split}.txt'}: {len(self.ids)} ids, expected "
                                     f"{split_sizes[split]} (the standard 795/654 NYUD-v2 split)")
        self.transform = transform

    def __len__(self) -> int:
        return len(self.ids)

    def _npy(self, sub: str, name: str) -> np.ndarray:
        p = self.root / sub / f"{name}.npy"
        if not p.is_file():
            raise FileNotFoundError(f"{p}: file not found (expected a .npy array)")
        return np.load(p)

    def __getitem__(self, index: int) -> dict[str, Any]:
        name = self.ids[index]
        img_path = self.root / "images" / f"{name}.jpg"
        if not img_path.is_file():
            img_path = img_path.with_suffix(".png")
        image = read_image(img_path)
        h, w = image.shape[:2]
        sample: dict[str, Any] = {"name": name, "image": torch.from_numpy(image).permute(2, 0, 1).float() / 255.0}
        for t in self.tasks:
            if t == "semseg":
                lbl = read_label_png(self.root / "segmentation" / f"{name}.png").astype(np.int64)
                arr = torch.from_numpy(np.where(lbl == 0, IGNORE_INDEX, lbl - 1))
            elif t == "depth":
                d = self._npy("depth", name).astype(np.float32)
                arr = torch.from_numpy(d.reshape(h, w))[None]
            elif t == "normals":
                n = self._npy("normals", name).astype(np.float32)
                if n.shape != (h, w, 3):
                    raise DatasetFormatError(f"{self.root / 'normals' / name}.npy: shape {n.shape}, expected {(h, w, 3)}")
                arr = torch.from_numpy(n).permute(2, 0, 1).contiguous()
            else:
                arr = torch.from_numpy(self._npy("edge", name).astype(np.float32).reshape(h, w))[None]
            if arr.shape[-2:] != (h, w):
                raise DatasetFormatError(f"{name}: {t} target is {tuple(arr.shape[-2:])}, image is {(h, w)}")
            sample[t] = arr
        return self.transform(sample) if self.transform else sample


# ----------------------------------------------------------------------------------------------------------
# transforms
# ----------------------------------------------------------------------------------------------------------
_LABEL_KEYS = ("semseg", "human_parts")


def _warp(sample: dict[str, Any], theta: Tensor, size: tuple[int, int]) -> dict[str, Any]:
    """Affine-resample every tensor to ``size``; outside the source: image 0, labels 255, others 0 (invalid)."""
    out = dict(sample)
    grid = F.affine_grid(theta[None], [1, 1, *size], align_corners=False)
    for k, v in sample.items():
        if not isinstance(v, Tensor):
            continue
        if k == "image":
            out[k] = F.grid_sample(v[None], grid, mode="bilinear", padding_mode="zeros", align_corners=False)[0]
        elif k in _LABEL_KEYS:
            x = F.grid_sample((v.float() + 1)[None, None], grid, mode="nearest", align_corners=False)[0, 0]
            out[k] = torch.where(x == 0, torch.full_like(x, IGNORE_INDEX), x - 1).long()
        else:
            out[k] = F.grid_sample(v[None].float(), grid, mode="nearest", align_corners=False)[0]
    return out


def _identity_theta() -> Tensor:
    return torch.tensor([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]])


class MultiTaskTransform:
    """Train/eval transform of one codebase (see the module docstring); ``size`` is the output (H, W).
    ``photometric=False`` leaves the ``invpt`` photometric distortion to the device."""

    def __init__(self, size: tuple[int, int], augmentation: str = "mtinet", train: bool = True,
                 rotation: float = 20.0, scale_range: tuple[float, float] = (0.75, 1.25),
                 crop_scale_range: tuple[float, float] = (0.5, 2.0), flip_prob: float = 0.5,
                 photometric: bool = True) -> None:
        if augmentation not in AUGMENTATIONS:
            raise ValueError(f"augmentation must be one of {AUGMENTATIONS}, got {augmentation!r}")
        self.size = tuple(size)
        self.augmentation = augmentation if train else "none"
        self.rotation = rotation
        self.scale_range = tuple(scale_range)
        self.crop_scale_range = tuple(crop_scale_range)
        self.flip_prob = flip_prob
        self.photometric = PhotometricDistortion() if photometric else None

    def _flip(self, sample: dict[str, Any]) -> dict[str, Any]:
        out = dict(sample)
        for k, v in sample.items():
            if isinstance(v, Tensor):
                out[k] = v.flip(-1)
        if "normals" in out:
            out["normals"] = out["normals"] * torch.tensor([-1.0, 1.0, 1.0]).view(3, 1, 1)
        return out

    def __call__(self, sample: dict[str, Any]) -> dict[str, Any]:
        if self.augmentation != "none" and random.random() < self.flip_prob:
            sample = self._flip(sample)
        h, w = sample["image"].shape[-2:]
        theta = _identity_theta()
        if self.augmentation == "mtinet":
            angle = math.radians(random.uniform(-self.rotation, self.rotation))
            sc = random.uniform(*self.scale_range)
            c, s = math.cos(angle), math.sin(angle)
            # output (normalised) → source: rotate by -angle, shrink by 1/scale (aspect-correct rotation)
            ar = w / h
            theta = torch.tensor([[c / sc, -s / sc / ar, 0.0], [s * ar / sc, c / sc, 0.0]])
        elif self.augmentation == "invpt":
            sc = random.uniform(*self.crop_scale_range)
            H, W = self.size
            # a crop of the (h·sc, w·sc) rescaled image: its extent in source normalised units
            fx, fy = W / (w * sc), H / (h * sc)
            ox = random.uniform(-(1 - fx), 1 - fx) if fx < 1 else 0.0
            oy = random.uniform(-(1 - fy), 1 - fy) if fy < 1 else 0.0
            theta = torch.tensor([[fx, 0.0, ox], [0.0, fy, oy]])
        sample = _warp(sample, theta, self.size)
        if self.augmentation == "invpt" and self.photometric is not None:
            sample["image"] = self.photometric(sample["image"])
        return sample


# ----------------------------------------------------------------------------------------------------------
# DataModules
# ----------------------------------------------------------------------------------------------------------
class MultiTaskDataModule(pl.LightningDataModule):
    """Train/val loaders of a multi-task dataset; images are ImageNet-normalised on the device.

    ``photometric_on_device=True`` (``invpt`` only) runs the photometric distortion once per training batch on
    the device before normalisation, not per sample in the workers (same law; on the CPU it also covers the
    pixels outside the warped image, so the whole image is jittered here too).
    """

    def __init__(self, root: str, tasks: list[str] | None, size: int | tuple[int, int], batch_size: int,
                 num_workers: int, augmentation: str, train_split: str, val_split: str, seed: int,
                 photometric_on_device: bool = False) -> None:
        super().__init__()
        if batch_size < 1 or num_workers < 0:
            raise ValueError(f"need batch_size >= 1 and num_workers >= 0, got {batch_size}, {num_workers}")
        if augmentation not in AUGMENTATIONS:
            raise ValueError(f"augmentation must be one of {AUGMENTATIONS}, got {augmentation!r}")
        self.root = root
        self.tasks = tasks
        self.size = (size, size) if isinstance(size, int) else tuple(size)
        self.batch_size = batch_size
        self.num_workers = num_workers
        self.augmentation = augmentation
        self.train_split, self.val_split = train_split, val_split
        self.seed = seed
        self.photometric_on_device = bool(photometric_on_device) and augmentation == "invpt"
        self.photometric_augment = BatchPhotometricDistortion() if self.photometric_on_device else None
        self.train_set = self.val_set = None

    def transform(self, train: bool, **kwargs: Any) -> MultiTaskTransform:
        """The train or eval transform (``kwargs``: the dataset's geometry settings)."""
        return MultiTaskTransform(self.size, self.augmentation, train, photometric=not self.photometric_on_device,
                                  **kwargs)

    def make(self, split: str, train: bool) -> Dataset:
        raise NotImplementedError

    def setup(self, stage: str | None = None) -> None:
        if stage in (None, "fit") and self.train_set is None:
            self.train_set = self.make(self.train_split, True)
            if len(self.train_set) < self.batch_size:
                raise ValueError(f"{type(self).__name__}: split {self.train_split!r} has {len(self.train_set)} samples, "
                                 f"fewer than batch_size={self.batch_size}")
        if stage in (None, "fit", "validate", "test", "predict") and self.val_set is None:
            self.val_set = self.make(self.val_split, False)

    def _loader(self, ds: Dataset | None, train: bool) -> DataLoader:
        if ds is None:
            raise RuntimeError("call `setup()` with the matching stage before asking for a dataloader")
        return DataLoader(ds, batch_size=self.batch_size, drop_last=train, num_workers=self.num_workers,
                          sampler=EpochShuffleSampler(len(ds), seed=self.seed) if train else None,
                          persistent_workers=self.num_workers > 0, pin_memory=torch.cuda.is_available())

    def train_dataloader(self) -> DataLoader:
        return self._loader(self.train_set, True)

    def val_dataloader(self) -> DataLoader:
        return self._loader(self.val_set, False)

    def test_dataloader(self) -> DataLoader:
        return self._loader(self.val_set, False)

    def predict_dataloader(self) -> DataLoader:
        return self._loader(self.val_set, False)

    def on_after_batch_transfer(self, batch: Any, dataloader_idx: int) -> Any:
        trainer = getattr(self, "trainer", None)
        if self.photometric_augment is not None and trainer is not None and trainer.training:
            batch = self.photometric_augment(batch)  # training batches only, in [0, 1]
        return imagenet_normalize(batch, keys=("image",))


class PASCALContextMTDataModule(MultiTaskDataModule):
    """PASCAL-Context MT: train 4,998 / val 5,105 images at ``size`` (448 for MTLoRA/TADFormer, 512 for
    MTI-Net/InvPT). See :class:`PASCALContextMT` and :class:`MultiTaskTransform`."""

    def __init__(self, root: str = "data/PASCAL_MT", tasks: list[str] | None = None, size: int | tuple[int, int] = 448,
                 batch_size: int = 32, num_workers: int = 4, augmentation: str = "mtinet", db_info: str | None = None,
                 train_split: str = "train", val_split: str = "val", seed: int = 0,
                 photometric_on_device: bool = False) -> None:
        super().__init__(root, tasks, size, batch_size, num_workers, augmentation, train_split, val_split, seed,
                         photometric_on_device)
        self.db_info = db_info
        self.save_hyperparameters()

    def make(self, split: str, train: bool) -> Dataset:
        return PASCALContextMT(self.root, split, self.tasks, self.db_info, self.transform(train))


class NYUDMTDataModule(MultiTaskDataModule):
    """NYUD-v2 MT at ``size`` (480×640 MTI-Net, 448×576 InvPT). ``split_sizes`` None asserts the standard
    795 train / 654 val; ``{}`` skips the check. Augmentation ``mtinet`` here is flip + a random scale in
    [1, 1.5] without rotation (MTI-Net's NYUD recipe draws the scale from {1, 1.2, 1.5})."""

    def __init__(self, root: str = "data/NYUD_MT", tasks: list[str] | None = None,
                 size: int | tuple[int, int] = (480, 640), batch_size: int = 8, num_workers: int = 4,
                 augmentation: str = "mtinet", split_sizes: dict[str, int] | None = None,
                 train_split: str = "train", val_split: str = "val", seed: int = 0,
                 photometric_on_device: bool = False) -> None:
        super().__init__(root, tasks, size, batch_size, num_workers, augmentation, train_split, val_split, seed,
                         photometric_on_device)
        self.split_sizes = {"train": 795, "val": 654} if split_sizes is None else split_sizes
        self.save_hyperparameters()

    def make(self, split: str, train: bool) -> Dataset:
        tf = self.transform(train, rotation=0.0, scale_range=(1.0, 1.5))
        return NYUDMT(self.root, split, self.tasks, self.split_sizes or None, tf)


_SYNTH_KEYS = {"semantic": "semseg", "parts": "human_parts", "saliency": "sal", "edges": "edge",
               "normals": "normals", "depth": "depth", "image": "image", "index": "index"}


class SyntheticMultiTaskDataModule(SyntheticScenesDataModule):
    """Core's :class:`~vitlab.core.data.SyntheticScenesDataModule` with every multi-task target, under the task
    names of this package: ``semseg`` (7 classes), ``human_parts`` (3: background + two object halves), ``sal``,
    ``edge``, ``normals``, ``depth``. Arguments are those of the core DataModule (no ``modalities``)."""

    def __init__(self, size: int | tuple[int, int] = 64, batch_size: int = 16, num_workers: int = 0,
                 train_samples: int = 2000, val_samples: int = 200, test_samples: int = 200,
                 predict_samples: int = 16, seed: int = 0, min_objects: int = 2, max_objects: int = 5) -> None:
        super().__init__(modalities=["image", "semantic", "parts", "saliency", "edges", "normals", "depth"],
                         size=size, batch_size=batch_size, num_workers=num_workers, train_samples=train_samples,
                         val_samples=val_samples, test_samples=test_samples, predict_samples=predict_samples,
                         seed=seed, min_objects=min_objects, max_objects=max_objects)

    def on_after_batch_transfer(self, batch: Any, dataloader_idx: int) -> Any:
        batch = super().on_after_batch_transfer(batch, dataloader_idx)
        return {_SYNTH_KEYS.get(k, k): v for k, v in batch.items()}
