"""Multi-task datasets in their on-disk layouts: PASCAL-Context MT and NYUD-v2 MT.

Label logic follows MTI-Net's loaders (`SimonVandenhende/Multi-Task-Learning-PyTorch`, also used by MTLoRA and
TADFormer); the code here is a re-implementation.

Every sample is a dict: ``image`` (3, H, W) float in [0, 1], ``name`` (the image id) and one key per task:
``semseg``/``human_parts`` (H, W) int64 with 255 ignored, ``sal``/``edge`` (1, H, W) float in {0, 1}, ``normals``
(3, H, W) (zero vector = invalid), ``depth`` (1, H, W) metres (0 = invalid).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from vitlab.core.data import (
    IGNORE_INDEX,
    DatasetFormatError,
    DatasetLayout,
    FormatContract,
    check,
    declares,
    open_image,
    read_image_tensor,
    read_label_png,
    read_png_scaled,
    register_dataset,
)

__all__ = [
    "NYUDMT",
    "PASCALContextMT",
    "PASCAL_PART_MAPPING",
    "pascal_edges",
    "read_nyud_depth",
    "read_nyud_edge",
    "read_nyud_normals",
    "read_nyud_semseg",
    "read_pascal_labelmap",
    "read_pascal_normals",
    "read_pascal_saliency",
    "read_pascal_semseg",
]


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


# ------------------------------------------------------------------------------------------------ file formats

PASCAL_SEMSEG = FormatContract("PASCAL-MT semseg label (8-bit: 0 = background, 1..20 = VOC classes)", bit_depth=(8,),
                               channels=(1,), value_range=(0, 20), ignore_index=IGNORE_INDEX, warn_empty=True)
PASCAL_SALIENCY = FormatContract("PASCAL-MT saliency map (8-bit greyscale, salient = v / 255 > 0.5)",
                                 bit_depth=(8,), channels=(1,))
PASCAL_NORMALS = FormatContract("PASCAL-MT normals map (8-bit RGB, n = 2 v / 255 - 1)", bit_depth=(8,),
                                channels=(3,))
PASCAL_LABELMAP = FormatContract("PASCAL-Context LabelMap (.mat, (H, W) class ids)", container="mat", key="LabelMap",
                                 layout="HW", dtype=("u", "i", "f"))
NYUD_SEMSEG = FormatContract("NYUD-MT semseg label (0 = void, 1..40 = classes)", bit_depth=(8, 16), channels=(1,),
                             value_range=(1, 40), ignore_index=0, ignore_name="void", warn_empty=True)
NYUD_DEPTH = FormatContract("NYUD-MT depth map (.npy, (H, W) metres, 0 = invalid)", container="npy", layout="HW",
                            dtype=("f",), value_range=(0.0, 100.0), ignore_index=0, ignore_name="invalid",
                            finite=True, warn_empty=True)
NYUD_NORMALS = FormatContract("NYUD-MT normals map (.npy, (H, W, 3) in [-1, 1], zero = invalid)", container="npy",
                              layout="HWC", channels=(3,), dtype=("f",), value_range=(-1.0, 1.0), atol=1e-3,
                              finite=True, ignore_index=0, ignore_name="invalid")
NYUD_EDGE = FormatContract("NYUD-MT edge map (.npy, (H, W) in 0..1)", container="npy", layout="HW",
                           dtype=("f", "u", "i", "b"), value_range=(0, 1), finite=True)


def _load_npy(path: Path, contract: FormatContract) -> np.ndarray:
    if not path.is_file():
        raise FileNotFoundError(f"{path}: file not found (expected a {contract.name})")
    try:
        return np.load(path, allow_pickle=False)
    except Exception as e:  # ValueError / OSError / UnpicklingError on a file that is no .npy
        raise DatasetFormatError(f"{path}: cannot read as a {contract.name}: {type(e).__name__}: {e}") from e


@declares(PASCAL_SEMSEG)
def read_pascal_semseg(path: Path) -> np.ndarray:
    """``semseg/{VOC12,pascal-context}/<id>.png`` -> (H, W) int64: 0..20, 255 ignore."""
    return read_label_png(path, PASCAL_SEMSEG).astype(np.int64)


@declares(PASCAL_SALIENCY)
def read_pascal_saliency(path: Path) -> np.ndarray:
    """``sal_distill/<id>.png`` -> (H, W) float32 in {0, 1} (``v / 255 > 0.5``, MTI-Net)."""
    sal = read_png_scaled(path, 255.0, None, contract=PASCAL_SALIENCY)
    return (sal > 0.5).astype(np.float32)


@declares(PASCAL_NORMALS)
def read_pascal_normals(path: Path) -> np.ndarray:
    """``normals_distill/<id>.png`` -> (H, W, 3) float32 ``2 v / 255 - 1`` (a grey PNG is refused)."""
    im = open_image(path, PASCAL_NORMALS.name)
    check(im, PASCAL_NORMALS, path)
    return 2.0 * np.asarray(im, dtype=np.float32) / 255.0 - 1.0


@declares(PASCAL_LABELMAP)
def read_pascal_labelmap(path: Path, size: tuple[int, int] | None = None) -> np.ndarray:
    """``pascal-context/trainval/<id>.mat`` key ``LabelMap`` -> (H, W) int64, checked against ``size``."""
    lm = np.asarray(_loadmat(path, PASCAL_LABELMAP.key))
    check(lm, PASCAL_LABELMAP, path, size=size)
    return lm.reshape(lm.shape[-2:] if lm.shape[0] == 1 else lm.shape[:2]).astype(np.int64)


@declares(NYUD_SEMSEG)
def read_nyud_semseg(path: Path) -> np.ndarray:
    """``segmentation/<id>.png`` -> (H, W) int64 train ids: 0 (void) -> 255, else label - 1 (MTI-Net)."""
    lbl = read_label_png(path, NYUD_SEMSEG).astype(np.int64)
    return np.where(lbl == 0, IGNORE_INDEX, lbl - 1)


@declares(NYUD_DEPTH)
def read_nyud_depth(path: Path, size: tuple[int, int] | None = None) -> np.ndarray:
    """``depth/<id>.npy`` -> (H, W) float32 metres; a map stored transposed (W, H) is refused, not reshaped."""
    d = _load_npy(path, NYUD_DEPTH)
    check(d, NYUD_DEPTH, path, size=size)
    return d.astype(np.float32).reshape(d.shape[-2:] if d.shape[0] == 1 else d.shape[:2])


@declares(NYUD_NORMALS)
def read_nyud_normals(path: Path, size: tuple[int, int] | None = None) -> np.ndarray:
    """``normals/<id>.npy`` -> (H, W, 3) float32 in [-1, 1] (0..255 data is refused)."""
    n = _load_npy(path, NYUD_NORMALS)
    check(n, NYUD_NORMALS, path, size=size)
    return n.astype(np.float32)


@declares(NYUD_EDGE)
def read_nyud_edge(path: Path, size: tuple[int, int] | None = None) -> np.ndarray:
    """``edge/<id>.npy`` -> (H, W) float32 in [0, 1]."""
    e = _load_npy(path, NYUD_EDGE)
    check(e, NYUD_EDGE, path, size=size)
    return e.astype(np.float32).reshape(e.shape[-2:] if e.shape[0] == 1 else e.shape[:2])


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
                return read_pascal_semseg(p)
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
        image = read_image_tensor(self.root / "JPEGImages" / f"{name}.jpg", uint8=False)
        h, w = image.shape[-2:]
        sample: dict[str, Any] = {"name": name, "image": image}
        label_map = None
        if "normals" in self.tasks or "edge" in self.tasks:
            label_map = read_pascal_labelmap(self.root / "pascal-context" / "trainval" / f"{name}.mat", (h, w))
        for t in self.tasks:
            if t == "semseg":
                arr = torch.from_numpy(self._semseg(name))
            elif t == "human_parts":
                arr = torch.from_numpy(self._human_parts(name, (h, w)))
            elif t == "sal":
                arr = torch.from_numpy(read_pascal_saliency(self.root / "sal_distill" / f"{name}.png"))[None]
            elif t == "normals":
                n = read_pascal_normals(self.root / "normals_distill" / f"{name}.png")
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

    def __getitem__(self, index: int) -> dict[str, Any]:
        name = self.ids[index]
        img_path = self.root / "images" / f"{name}.jpg"
        if not img_path.is_file():
            img_path = img_path.with_suffix(".png")
        image = read_image_tensor(img_path, uint8=False)
        h, w = image.shape[-2:]
        sample: dict[str, Any] = {"name": name, "image": image}
        for t in self.tasks:
            if t == "semseg":
                arr = torch.from_numpy(read_nyud_semseg(self.root / "segmentation" / f"{name}.png"))
            elif t == "depth":
                arr = torch.from_numpy(read_nyud_depth(self.root / "depth" / f"{name}.npy", (h, w)))[None]
            elif t == "normals":
                n = read_nyud_normals(self.root / "normals" / f"{name}.npy", (h, w))
                arr = torch.from_numpy(n).permute(2, 0, 1).contiguous()
            else:
                arr = torch.from_numpy(read_nyud_edge(self.root / "edge" / f"{name}.npy", (h, w)))[None]
            if arr.shape[-2:] != (h, w):
                raise DatasetFormatError(f"{name}: {t} target is {tuple(arr.shape[-2:])}, image is {(h, w)}")
            sample[t] = arr
        return self.transform(sample) if self.transform else sample


# `vitlab data check pascal_context_mt <root>` / `nyud_mt <root>`: every task folder, every file through the readers
register_dataset(DatasetLayout(
    "pascal_context_mt", "PASCAL-Context multi-task (PASCAL_MT)", {"train": 4_998, "val": 5_105},
    lambda root, split: PASCALContextMT(str(root), split, tasks=list(PASCALContextMT.TASKS)),
    ("JPEGImages", "semseg", "human_parts", "sal_distill", "normals_distill", "pascal-context/trainval",
     "ImageSets/Context", "db_info"),
    "ASTMT's PASCAL_MT release (Maninis et al. 2019): 4,998 train / 5,105 val", ("PASCAL_MT",)))
register_dataset(DatasetLayout(
    "nyud_mt", "NYUD-v2 multi-task (NYUD_MT)", {"train": 795, "val": 654},
    lambda root, split: NYUDMT(str(root), split, tasks=list(NYUDMT.TASKS)),
    ("images", "segmentation", "depth", "normals", "edge", "gt_sets"),
    "Silberman et al. 2012: the 795/654 split of the 1,449 labelled frames", ("NYUD_MT",)))
