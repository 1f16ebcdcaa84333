"""Stereo datasets in their own on-disk layouts: SceneFlow, KITTI 2012/2015, ETH3D two-view, Middlebury.

Every dataset yields ``{"image", "right": float32 (3, H, W) in [0, 1], "disparity": float32 (1, H, W) pixels,
+inf = invalid, "name": str}`` plus ``"occlusion"`` (1, H, W) bool (True = GT pixel occluded in the right view)
where the dataset ships a non-occluded mask. Files are read with core's readers (PFM bottom-up, KITTI uint16 /256,
palette PNGs). Layouts and splits follow CroCo-Stereo's ``datasets_stereo.py`` [code].
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import partial
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import Dataset

from vitlab.core.data import (
    DatasetFormatError,
    DatasetLayout,
    FormatContract,
    declares,
    read_disparity_pfm,
    read_image_tensor,
    read_kitti_disparity,
    read_middlebury_disparity,
    read_png_scaled,
    register_dataset,
)
from vitlab.core.errors import VitlabError

__all__ = [
    "NOCC_MASK",
    "MissingDatasetFileError",
    "ETH3DStereo",
    "KITTIStereo",
    "MiddleburyStereo",
    "SceneFlowStereo",
    "StereoPairs",
    "downsample_stereo_sample",
    "left_right_consistent",
    "read_nocc_mask",
]


class MissingDatasetFileError(VitlabError, FileNotFoundError):
    """A dataset folder or file the layout requires is absent (one line from ``vitlab``; a FileNotFoundError)."""


def _disp(d: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(d, dtype=np.float32))[None]


def _kitti_valid(path: Path) -> np.ndarray:
    return np.isfinite(read_kitti_disparity(path))


NOCC_MASK = FormatContract("occlusion mask mask0nocc.png (8-bit: 255 = non-occluded, 128 = occluded, "
                           "0 = no ground truth)", container="image", bit_depth=(8,), channels=(1,),
                           allowed=(0, 128, 255))


@declares(NOCC_MASK)
def read_nocc_mask(path: Path) -> np.ndarray:
    """``mask0nocc.png`` (ETH3D / MiddEval3) or Middlebury v2 ``nonocc.png`` as stored values (float32)."""
    return read_png_scaled(path, 1.0, invalid_value=None, contract=NOCC_MASK)


def _mask_equals(path: Path, value: int) -> np.ndarray:
    return read_nocc_mask(path) == value


def _require_dir(path: Path, what: str) -> Path:
    if not path.is_dir():
        raise MissingDatasetFileError(f"{path}: directory not found (expected {what})")
    return path


def left_right_consistent(left: np.ndarray, right: np.ndarray, tolerance: float = 1.0) -> np.ndarray:
    """Pixels of the left GT confirmed by the right-view GT: ``|d_R(x - d_L(x)) - d_L(x)| <= tolerance``.

    The non-occluded mask of datasets that ship both views' GT but no mask (Middlebury 2005/2006 ``disp1`` /
    ``disp5``, 2014 ``disp0`` / ``disp1``): a left pixel whose match leaves the frame, lands on unknown right
    GT or on a right disparity that disagrees is occluded. MiddEval3's ``mask0nocc.png`` is made the same way
    from the same maps; the 1 px tolerance is our choice.
    """
    H, W = left.shape
    if right.shape != (H, W):
        raise DatasetFormatError(f"right-view GT {right.shape} does not match the left GT {(H, W)}")
    ok = np.isfinite(left)
    xr = np.round(np.arange(W, dtype=np.float64)[None] - np.where(ok, left, 0.0)).astype(np.int64)
    ok &= (xr >= 0) & (xr < W)
    rows = np.broadcast_to(np.arange(H)[:, None], (H, W))
    dr = right[rows, np.clip(xr, 0, W - 1)]
    return ok & np.isfinite(dr) & (np.abs(dr - np.where(ok, left, 0.0)) <= tolerance)


def _lr_noc(left_gt, right_gt, tolerance: float) -> np.ndarray:
    return left_right_consistent(left_gt(), right_gt(), tolerance)


def downsample_stereo_sample(sample: dict, factor: int) -> dict:
    """A sample at ``1 / factor`` resolution (how vitlab makes Middlebury 2014 half / quarter size).

    The frame is cropped to a multiple of ``factor`` (at most ``factor - 1`` right/bottom pixels), images are
    averaged over ``factor x factor`` blocks (area resampling), a block's disparity is the mean of its GT divided
    by ``factor`` and is valid only when all its GT pixels are, and a block is occluded when any pixel is.
    """
    f = int(factor)
    if f == 1:
        return sample
    out = dict(sample)
    H, W = sample["image"].shape[-2:]
    h, w = H // f, W // f
    if h == 0 or w == 0:
        raise DatasetFormatError(f"{sample.get('name')}: {W}x{H} frame is smaller than the reduction factor {f}")
    for key in ("image", "right"):
        out[key] = F.avg_pool2d(sample[key][None, :, : h * f, : w * f], f)[0]
    d = sample["disparity"][:, : h * f, : w * f]
    fin = torch.isfinite(d)
    mean = F.avg_pool2d(torch.where(fin, d, 0.0)[None], f)[0] / f
    all_valid = F.avg_pool2d(fin.float()[None], f)[0] > 1.0 - 1e-6
    out["disparity"] = torch.where(all_valid, mean, torch.full_like(mean, float("inf")))
    if "occlusion" in sample:
        occ = sample["occlusion"][:, : h * f, : w * f].float()
        out["occlusion"] = (F.max_pool2d(occ[None], f)[0] > 0.5) & all_valid
    return out


class StereoPairs(Dataset):
    """Base class: a list of ``(name, left, right, gt_loader or None, noc_loader or None)`` entries."""

    layout = ""

    def __init__(self) -> None:
        self.pairs: list[tuple] = []

    def _finish(self, root: Path) -> None:
        if not self.pairs:
            raise DatasetFormatError(f"{root}: no stereo pairs found; expected {self.layout}")

    def __len__(self) -> int:
        return len(self.pairs)

    def __getitem__(self, index: int) -> dict:
        name, left, right, gt, noc = self.pairs[index]
        sample = {"image": read_image_tensor(left, uint8=False), "right": read_image_tensor(right, uint8=False),
                  "name": name}
        if sample["image"].shape != sample["right"].shape:
            raise DatasetFormatError(f"{left} and {right}: left/right sizes differ "
                                     f"{tuple(sample['image'].shape)} vs {tuple(sample['right'].shape)}")
        H, W = sample["image"].shape[-2:]
        if gt is not None:
            d = gt()
            if d.shape != (H, W):
                raise DatasetFormatError(f"{name}: disparity {d.shape} does not match image {(H, W)}")
            sample["disparity"] = _disp(d)
            if noc is not None:
                nocmask = noc()
                sample["occlusion"] = torch.from_numpy(np.isfinite(d) & ~nocmask)[None]
        else:
            sample["disparity"] = torch.full((1, H, W), float("inf"))
        return sample


# ---------------------------------------------------------------------------------------------------- SceneFlow
class SceneFlowStereo(StereoPairs):
    """Freiburg SceneFlow (Mayer et al. 2016): FlyingThings3D, Driving, Monkaa; PFM left disparity.

    Layout: ``root/<subset>/frames_{clean,final}pass/<...>/left/*.png``, right in ``.../right/``, GT
    ``root/<subset>/disparity/<...>/left/*.pfm``. FlyingThings3D has ``TRAIN`` / ``TEST`` sub-folders.

    Args:
        root: folder holding the subset folders.
        split: ``"train"`` (Driving + Monkaa + Things TRAIN, 35454 pairs per pass), ``"test"`` (Things TEST,
            4370) or ``"test1of100"`` (every 100th test pair).
        passes: ``["clean"]``, ``["final"]`` or both (``train_allpass``).
        subsets: folder names of FlyingThings3D, Driving, Monkaa under ``root``; missing ones are skipped
            for ``train`` (at least one must exist).
    """

    layout = "root/<subset>/frames_<pass>pass/.../left/*.png + root/<subset>/disparity/.../left/*.pfm"

    def __init__(self, root: str, split: str = "train", passes: Sequence[str] = ("clean",),
                 subsets: Sequence[str] = ("flyingthings3d", "driving", "monkaa")) -> None:
        super().__init__()
        if split not in ("train", "test", "test1of100"):
            raise ValueError(f"SceneFlowStereo split must be train/test/test1of100, got {split!r}")
        root_p = _require_dir(Path(root), "the SceneFlow root with flyingthings3d/driving/monkaa folders")
        things = subsets[0]
        use = list(subsets) if split == "train" else [things]
        for sub in use:
            for ps in passes:
                if ps not in ("clean", "final"):
                    raise ValueError(f"SceneFlow pass must be 'clean' or 'final', got {ps!r}")
                frames = root_p / sub / f"frames_{ps}pass"
                if not frames.is_dir():
                    continue
                for left in sorted(frames.rglob("left/*.png")):
                    rel = left.relative_to(frames)
                    if sub == things:
                        part = rel.parts[0].upper()
                        if part not in ("TRAIN", "TEST"):
                            raise DatasetFormatError(f"{left}: FlyingThings3D frames must be under TRAIN/ or TEST/")
                        if (part == "TRAIN") != (split == "train"):
                            continue
                    right = left.parent.parent / "right" / left.name
                    gt = root_p / sub / "disparity" / rel.with_suffix(".pfm")
                    for p in (right, gt):
                        if not p.is_file():
                            raise MissingDatasetFileError(f"{p}: missing counterpart of {left}")
                    name = f"{sub}/{ps}/{rel.with_suffix('')}".replace("/left/", "/")
                    self.pairs.append((name, left, right, partial(read_disparity_pfm, gt), None))
        if split == "test1of100":
            self.pairs = self.pairs[::100]
        self._finish(root_p)


# ---------------------------------------------------------------------------------------------------- KITTI
class KITTIStereo(StereoPairs):
    """KITTI 2012 / 2015 stereo: uint16 PNG, d = v / 256, 0 = no GT.

    Layout (root = ``data_stereo_flow`` for 2012, ``data_scene_flow`` for 2015):
    2012 ``{training,testing}/colored_0, colored_1, disp_occ, disp_noc / *_10.png``;
    2015 ``{training,testing}/image_2, image_3, disp_occ_0, disp_noc_0 / *_10.png``.

    Args:
        year: 2012 or 2015.
        split: ``"train"`` (all training pairs), ``"subtrain"`` (all but the last 5), ``"subval"`` (the last 5,
            CroCo/UniTT), ``"test"`` (testing pairs, no GT).
        gt: ``"occ"`` (all valid GT, default) or ``"noc"`` (non-occluded only). When both maps exist,
            ``occlusion`` marks pixels in occ but not in noc.
    """

    layout = "root/training/{colored_0,colored_1,disp_occ} (2012) or root/training/{image_2,image_3,disp_occ_0} (2015)"

    def __init__(self, root: str, year: int = 2015, split: str = "train", gt: str = "occ") -> None:
        super().__init__()
        if year not in (2012, 2015):
            raise ValueError(f"KITTI year must be 2012 or 2015, got {year!r}")
        if split not in ("train", "subtrain", "subval", "test"):
            raise ValueError(f"KITTI split must be train/subtrain/subval/test, got {split!r}")
        if gt not in ("occ", "noc"):
            raise ValueError(f"KITTI gt must be 'occ' or 'noc', got {gt!r}")
        names = ("colored_0", "colored_1", "disp_occ", "disp_noc") if year == 2012 else \
            ("image_2", "image_3", "disp_occ_0", "disp_noc_0")
        base = _require_dir(Path(root) / ("testing" if split == "test" else "training"),
                            f"KITTI {year} {self.layout}")
        left_dir = _require_dir(base / names[0], f"KITTI {year} left images ({names[0]}/*_10.png)")
        lefts = sorted(left_dir.glob("*_10.png"))
        if split == "subtrain":
            lefts = lefts[:-5]
        elif split == "subval":
            lefts = lefts[-5:]
        for left in lefts:
            right = base / names[1] / left.name
            if not right.is_file():
                raise MissingDatasetFileError(f"{right}: missing right image of {left}")
            gt_fn = noc_fn = None
            if split != "test":
                occ_p, noc_p = base / names[2] / left.name, base / names[3] / left.name
                main = occ_p if gt == "occ" else noc_p
                if not main.is_file():
                    raise MissingDatasetFileError(f"{main}: missing KITTI disparity of {left}")
                gt_fn = partial(read_kitti_disparity, main)
                if gt == "occ" and noc_p.is_file():
                    noc_fn = partial(_kitti_valid, noc_p)
            self.pairs.append((f"kitti{year}/{left.stem}", left, right, gt_fn, noc_fn))
        self._finish(base)


# ---------------------------------------------------------------------------------------------------- ETH3D
ETH3D_SUBVAL = ("delivery_area_3s", "electro_3l", "playground_3l")


class ETH3DStereo(StereoPairs):
    """ETH3D low-res two-view: ``im0.png``, ``im1.png``, ``disp0GT.pfm`` (inf = invalid), ``mask0nocc.png``.

    Layouts: the official one (``root/two_view_training/<scene>/im*.png`` with GT in
    ``root/two_view_training_gt/<scene>/``; ``two_view_test`` for test) or a flat folder of scene folders with
    the GT beside the images (``disp0GT.pfm`` or ``disp0.pfm``).

    Args:
        split: ``"train"`` (27 scenes), ``"subtrain"`` / ``"subval"`` (CroCo's 3 validation scenes
            delivery_area_3s, electro_3l, playground_3l held out / only), ``"test"`` (no GT).
    """

    layout = "root/two_view_training/<scene>/{im0,im1}.png + root/two_view_training_gt/<scene>/disp0GT.pfm"

    def __init__(self, root: str, split: str = "train") -> None:
        super().__init__()
        if split not in ("train", "subtrain", "subval", "test"):
            raise ValueError(f"ETH3D split must be train/subtrain/subval/test, got {split!r}")
        root_p = _require_dir(Path(root), f"ETH3D {self.layout}")
        sub = "two_view_test" if split == "test" else "two_view_training"
        if (root_p / sub).is_dir():
            img_root, gt_root = root_p / sub, root_p / f"{sub}_gt"
        else:
            img_root = gt_root = root_p
        for scene in sorted(p for p in img_root.iterdir() if (p / "im0.png").is_file()):
            if split == "subval" and scene.name not in ETH3D_SUBVAL:
                continue
            if split == "subtrain" and scene.name in ETH3D_SUBVAL:
                continue
            right = scene / "im1.png"
            if not right.is_file():
                raise MissingDatasetFileError(f"{right}: missing right image of scene {scene}")
            gt_fn = noc_fn = None
            if split != "test":
                g = gt_root / scene.name
                cands = [g / "disp0GT.pfm", g / "disp0.pfm"]
                gt_p = next((c for c in cands if c.is_file()), None)
                if gt_p is None:
                    raise MissingDatasetFileError(f"{cands[0]}: missing ETH3D ground truth of scene {scene.name}")
                gt_fn = partial(read_disparity_pfm, gt_p)
                m = g / "mask0nocc.png"
                if m.is_file():
                    noc_fn = partial(_mask_equals, m, 255)
            self.pairs.append((f"eth3d/{scene.name}", scene / "im0.png", right, gt_fn, noc_fn))
        self._finish(img_root)


# ---------------------------------------------------------------------------------------------------- Middlebury
MIDDLEBURY_VERSIONS = ("2001", "2003", "2005", "2006", "2014", "eval3", "v2")
_SIZE_SCALE = {"full": 1.0, "half": 2.0, "third": 3.0}


class MiddleburyStereo(StereoPairs):
    """Middlebury stereo: 2001 / 2003 / 2005 / 2006 / v2 (8-bit images, 0 = unknown), 2014 and MiddEval3 (PFM).

    Layouts:
        * 2001: ``root/<Scene>/scene1.row3.col3.ppm, scene1.row3.col4.ppm, truedisp.row3.col3.pgm`` (Tsukuba,
          ``d = v / 16``) or ``im2.ppm, im6.ppm, disp2.pgm`` (Venus, Sawtooth, ..., ``d = v / 8``).
        * 2003: ``root/<Scene>/im2.png, im6.png, disp2.png`` (Cones, Teddy); ``d = v / s`` with
          ``s = {quarter: 4, half: 2, full: 1}[size]`` (quarter default, the distributed size).
        * v2 (the v2 evaluation layout): ``root/<Scene>/imL.png, imR.png, groundtruth.png`` (often a grey-palette
          PNG, read through its palette), ``d = v / scale`` with ``scale`` the first line of ``info.txt``;
          ``nonocc.png`` (255 = evaluated) is the non-occluded mask.
        * 2005 / 2006: ``root/<Scene>/view1.png, view5.png, disp1.png`` (or ``Illum*/Exp*/view{1,5}.png``, one
          pair per illumination/exposure); the PNG holds full-resolution disparities, so ``d = v / s`` with
          ``s = {full: 1, half: 2, third: 3}[size]``.
        * 2014: ``root/<Scene>-{perfect,imperfect}/im0.png, im1.png, im1E.png, im1L.png, disp0.pfm``: three
          pairs per scene (im1, im1E, im1L; ``rights`` picks them), 138 for 46 scenes. The dataset is
          distributed at full size only; ``size`` ``"half"`` / ``"quarter"`` reduces each sample
          (:func:`downsample_stereo_sample`).
        * eval3: ``root/training{F,H,Q}/<Scene>/im0.png, im1.png, disp0GT.pfm, mask0nocc.png`` (test: ``test{F,H,Q}``).

    Args:
        version: ``"2005"``, ``"2006"``, ``"2014"`` or ``"eval3"``.
        split: ``"train"`` (all), ``"subtrain"`` / ``"subval"`` (CroCo's held-out scenes: the last training
            scene for eval3, Umbrella-imperfect and Vintage-perfect for 2014, the last scene otherwise
            [inferred]), ``"test"`` (eval3 only, no GT).
        size: 2005/2006 image size (``"half"`` default); eval3 resolution letter ``"F"``, ``"H"`` or ``"Q"``;
            2014 ``"full"`` (default), ``"half"`` or ``"quarter"``.
        rights: 2014 right views to pair with ``im0`` (default all three: ``im1``, ``im1E``, ``im1L``).
        derive_occlusion: 2005 / 2006 / 2014, which ship the right view's GT (``disp5.png`` / ``disp1.pfm``) but
            no mask: add ``occlusion`` from a left-right check (:func:`left_right_consistent`) where that GT exists.
        occlusion_tolerance: the check's tolerance in full-resolution pixels (1).
    """

    layout = ("see MiddleburyStereo docstring (2001 *.ppm + truedisp/disp2.pgm; 2003 im2/im6/disp2.png; "
              "2005/2006 view1/view5/disp1.png; 2014 im0/im1/disp0.pfm; eval3; v2 imL/imR/groundtruth.png)")

    def __init__(self, root: str, version: str = "2014", split: str = "train", size: str | None = None,
                 rights: Sequence[str] = ("im1", "im1E", "im1L"), derive_occlusion: bool = False,
                 occlusion_tolerance: float = 1.0) -> None:
        super().__init__()
        self.factor = 1
        if version not in MIDDLEBURY_VERSIONS:
            raise ValueError(f"Middlebury version must be one of {MIDDLEBURY_VERSIONS}, got {version!r}")
        if split not in ("train", "subtrain", "subval", "test"):
            raise ValueError(f"Middlebury split must be train/subtrain/subval/test, got {split!r}")
        if split == "test" and version != "eval3":
            raise ValueError("Middlebury test split exists for eval3 only")
        root_p = _require_dir(Path(root), f"Middlebury {version}: {self.layout}")
        if version in ("2001", "2003", "v2"):
            self._small_layouts(root_p, version, split, size)
        elif version in ("2005", "2006"):
            size = size or "half"
            if size not in _SIZE_SCALE:
                raise ValueError(f"Middlebury {version} size must be one of {sorted(_SIZE_SCALE)}, got {size!r}")
            scenes = sorted(p for p in root_p.iterdir() if p.is_dir() and (p / "disp1.png").is_file())
            scenes = self._split(scenes, split, last=1)
            for sc in scenes:
                gt_fn = partial(read_middlebury_disparity, sc / "disp1.png", _SIZE_SCALE[size])
                noc_fn = None
                if derive_occlusion and (sc / "disp5.png").is_file():
                    right_fn = partial(read_middlebury_disparity, sc / "disp5.png", _SIZE_SCALE[size])
                    noc_fn = partial(_lr_noc, gt_fn, right_fn, occlusion_tolerance / _SIZE_SCALE[size])
                views = [sc] if (sc / "view1.png").is_file() else sorted(
                    p.parent for p in sc.glob("Illum*/Exp*/view1.png"))
                for v in views:
                    tag = "" if v == sc else "/" + "/".join(v.relative_to(sc).parts)
                    self.pairs.append((f"middlebury{version}/{sc.name}{tag}", v / "view1.png", v / "view5.png",
                                       gt_fn, noc_fn))
        elif version == "2014":
            factors = {"full": 1, "half": 2, "quarter": 4}
            size = size or "full"
            if size not in factors:
                raise ValueError(f"Middlebury 2014 size must be one of {sorted(factors)}, got {size!r}")
            unknown = sorted(set(rights) - {"im1", "im1E", "im1L"})
            if unknown or not rights:
                raise ValueError(f"Middlebury 2014 rights must be a non-empty subset of im1, im1E, im1L, got "
                                 f"{list(rights)!r}")
            self.factor = factors[size]
            scenes = sorted(p for p in root_p.iterdir() if (p / "im0.png").is_file())
            held = ("Umbrella-imperfect", "Vintage-perfect")
            if split == "subval":
                scenes = [s for s in scenes if s.name in held]
            elif split == "subtrain":
                scenes = [s for s in scenes if s.name not in held]
            for sc in scenes:
                gt = sc / "disp0.pfm"
                if not gt.is_file():
                    raise MissingDatasetFileError(f"{gt}: missing Middlebury 2014 GT of scene {sc.name}")
                gt_fn, noc_fn = partial(read_disparity_pfm, gt), None
                if derive_occlusion and (sc / "disp1.pfm").is_file():
                    noc_fn = partial(_lr_noc, gt_fn, partial(read_disparity_pfm, sc / "disp1.pfm"),
                                     occlusion_tolerance)
                for r in ("im1", "im1E", "im1L"):
                    if r in rights and (sc / f"{r}.png").is_file():
                        self.pairs.append((f"middlebury2014/{sc.name}/{r}", sc / "im0.png", sc / f"{r}.png",
                                           gt_fn, noc_fn))
        else:
            size = size or "H"
            if size not in ("F", "H", "Q"):
                raise ValueError(f"MiddEval3 size must be 'F', 'H' or 'Q', got {size!r}")
            base = _require_dir(root_p / f"{'test' if split == 'test' else 'training'}{size}",
                                f"MiddEval3 training{size}/<Scene>/im0.png")
            scenes = sorted(p for p in base.iterdir() if (p / "im0.png").is_file())
            if split != "test":
                scenes = self._split(scenes, split, last=1)
            for sc in scenes:
                gt_fn = noc_fn = None
                if split != "test":
                    gt = sc / "disp0GT.pfm"
                    if not gt.is_file():
                        raise MissingDatasetFileError(f"{gt}: missing MiddEval3 GT of scene {sc.name}")
                    gt_fn = partial(read_disparity_pfm, gt)
                    m = sc / "mask0nocc.png"
                    if m.is_file():  # 255 = non-occluded, 128 = occluded, 0 = no GT
                        noc_fn = partial(_mask_equals, m, 255)
                self.pairs.append((f"middeval3{size}/{sc.name}", sc / "im0.png", sc / "im1.png", gt_fn, noc_fn))
        self._finish(root_p)

    def __getitem__(self, index: int) -> dict:
        return downsample_stereo_sample(super().__getitem__(index), self.factor)

    def _small_layouts(self, root: Path, version: str, split: str, size: str | None) -> None:
        """The 2001 / 2003 / v2 layouts: one pair per scene folder."""
        if version == "2003":
            scales = {"quarter": 4.0, "half": 2.0, "full": 1.0}
            size = size or "quarter"
            if size not in scales:
                raise ValueError(f"Middlebury 2003 size must be one of {sorted(scales)}, got {size!r}")
        # (left, right, GT, scale) per naming; v2 reads its scale from info.txt
        names = {"2001": [("scene1.row3.col3.ppm", "scene1.row3.col4.ppm", "truedisp.row3.col3.pgm", 16.0),
                          ("im2.ppm", "im6.ppm", "disp2.pgm", 8.0)],
                 "2003": [("im2.png", "im6.png", "disp2.png", scales[size] if version == "2003" else 0.0)],
                 "v2": [("imL.png", "imR.png", "groundtruth.png", None)]}[version]
        found = []
        for sc in sorted(p for p in root.iterdir() if p.is_dir()):
            for left, right, gt, scale in names:
                if (sc / left).is_file() and (sc / gt).is_file():
                    found.append((sc, left, right, gt, scale))
                    break
        for sc, left, right, gt, scale in self._split(found, split, last=1):
            noc_fn = None
            if version == "v2":
                info = sc / "info.txt"
                try:
                    scale = float(info.read_text().split()[0])
                except (OSError, IndexError, ValueError) as err:
                    raise DatasetFormatError(f"{info}: expected the disparity scale on its first line "
                                             f"(Middlebury v2 layout)") from err
                if (sc / "nonocc.png").is_file():
                    noc_fn = partial(_mask_equals, sc / "nonocc.png", 255)
            self.pairs.append((f"middlebury{version}/{sc.name}", sc / left, sc / right,
                               partial(read_middlebury_disparity, sc / gt, scale), noc_fn))

    @staticmethod
    def _split(scenes: list, split: str, last: int) -> list:
        if split == "subval":
            return scenes[-last:]
        if split == "subtrain":
            return scenes[:-last]
        return scenes


# `vitlab data check <name> <root>`: the stereo layouts, every pair read through the readers above
_KITTI = {  # year: (archive folder, training folders, documented sizes)
    2012: ("data_stereo_flow", ("colored_0", "colored_1", "disp_occ", "disp_noc"),
           "the KITTI stereo 2012 benchmark page (Geiger et al. 2012): 194 training / 195 test pairs", 194),
    2015: ("data_scene_flow", ("image_2", "image_3", "disp_occ_0", "disp_noc_0"),
           "the KITTI scene flow 2015 benchmark page (Menze & Geiger 2015): 200 training / 200 test pairs", 200),
}
for _year, (_archive, _folders, _source, _n) in _KITTI.items():
    register_dataset(DatasetLayout(
        f"kitti{_year}", f"KITTI {_year} stereo ({_archive})", {"train": _n},
        lambda root, split, year=_year: KITTIStereo(str(root), year, split),
        tuple(f"training/{d}" for d in _folders), _source, (_archive,)))
register_dataset(DatasetLayout(
    "sceneflow", "SceneFlow (FlyingThings3D + Monkaa + Driving, clean pass)", {"train": 35_454, "test": 4_370},
    lambda root, split: SceneFlowStereo(str(root), split),
    tuple(f"{s}/{d}" for s in ("flyingthings3d", "monkaa", "driving") for d in ("frames_cleanpass", "disparity")),
    "the Freiburg SceneFlow page (Mayer et al. 2016): train = FlyingThings3D 22,390 + Monkaa 8,664 + "
    "Driving 4,400; test = FlyingThings3D 4,370"))
register_dataset(DatasetLayout(
    "eth3d", "ETH3D low-res two-view", {"train": 27}, lambda root, split: ETH3DStereo(str(root), split),
    ("two_view_training", "two_view_training_gt"),
    "the ETH3D two-view benchmark page (Schöps et al. 2017): 27 training / 20 test scenes"))
