"""Zero-shot stereo evaluation: one fixed, documented protocol over the real benchmarks' training sets.

``vitlab test --config configs/stereo/zero_shot.yaml --ckpt_path <run>`` evaluates any stereo module of this
package on any subset of KITTI 2012 / 2015 training, Middlebury 2014 (half or quarter), MiddEval3 (H / Q),
Middlebury 2006 / 2005 and ETH3D two-view training, one named test loader per benchmark, and prints, logs and
writes (``zero_shot.json`` / ``zero_shot.csv`` in the run folder) one row per benchmark with the metric its
community reports, on non-occluded and on all pixels, plus EPE everywhere. An optional classical reference row
(OpenCV StereoSGBM, ``pip install 'vitlab-stereo[sgbm]'``) runs on the same pairs in the same table.

Protocol (what is a benchmark's own convention and what is our documented choice):

* **Metrics.** KITTI 2012 / 2015: D1 = % pixels with |err| > 3 px **and** > 5 % of |d| (the KITTI 2015 devkit
  rule; KITTI 2012's own leaderboard uses the absolute 3 px rule, reported as ``bad3`` in the results file),
  pooled over every valid pixel of the split (KITTI leaderboard pooling). Middlebury (2014, MiddEval3, 2006,
  2005): bad-2.0 = % pixels with |err| > 2 px **in pixels of the evaluated resolution** (RAFT-Stereo's
  ``validate_middlebury`` convention, not the MiddEval3 SDK's full-resolution threshold), averaged per image
  (unweighted: the MiddEval3 table's per-scene weights are not applied). ETH3D: bad-1.0, averaged per image (the
  ETH3D two-view table). EPE (mean |err|) for every benchmark with the same reduction. Every metric is over valid
  GT; the max disparity below never masks GT.
* **Masks.** ``noc`` = non-occluded pixels: KITTI ``disp_noc(_0)``, ETH3D / MiddEval3 ``mask0nocc.png == 255``;
  Middlebury 2014 / 2006 / 2005 ship the right view's GT (``disp1.pfm`` / ``disp5.png``) but no mask, so the mask
  is a 1 px left-right check against it (our choice, :func:`~vitlab.stereo.datasets.left_right_consistent`).
  Where the data holds no mask (e.g. a sample without ``disp_noc``) the ``noc`` column is empty.
* **Pairs.** All training pairs with GT; Middlebury 2014: the ``im0`` / ``im1`` pair of every scene (the
  ``im1E`` / ``im1L`` exposure and lighting variants are left out, our choice); 2005 / 2006: every
  illumination/exposure pair under the size folder given.
* **Resolution.** Metrics are always computed at the benchmark's stated resolution: KITTI and ETH3D as
  distributed; MiddEval3 at the letter given; 2005 / 2006 at the size folder given (their PNGs hold
  full-resolution disparities, divided by 2 / 3 at half / third size); Middlebury 2014 is distributed at full
  size only, so half / quarter are made here (:func:`~vitlab.stereo.datasets.downsample_stereo_sample`: frame
  cropped to a multiple of the factor, images averaged over factor x factor blocks, GT = block mean / factor,
  valid only where the whole block is, our choice).
* **Max disparity** at the evaluated resolution (our documented choice; override with ``max_disparity``): KITTI
  192 px (the cost-volume range of PSMNet-style methods), ETH3D 64 px, Middlebury 2014 / MiddEval3 800 px at full
  size (Vintage's ``ndisp`` is 760), 2005 / 2006 256 px at full size; halved / quartered / thirded with the
  resolution. It sets SGBM's search range and the ``scale`` rule.
* **Scale rule** (``scale``): the network sees both views resized by ``s`` and its disparity comes back to the
  benchmark resolution multiplied by the x-factor (:meth:`StereoMatching.predict_disparity`). ``"auto"``
  (default): ``s = min(1, trained max disparity / benchmark max disparity)`` with the trained range stored in the
  checkpoint (``train_max_disparity``; ``s = 1`` when the checkpoint has none), so a model never has to output
  disparities beyond what it was trained on; ``"native"``: ``s = 1``; a number: that ``s`` everywhere. Full frame
  or tiles follow the module's own ``tile_size``.
* **SGBM reference** (:func:`sgbm_disparity`): OpenCV ``StereoSGBM`` 3-way on greyscale views at the benchmark
  resolution, search range = max disparity rounded up to a multiple of 16, block 5, ``P1 = 8 b^2``,
  ``P2 = 32 b^2``, uniqueness 10, speckle window 100 / range 2, LR check 1 px, both views edge-padded on the
  left by the search range so the first columns are matched too; its holes are filled per row with
  the smaller neighbouring disparity (the KITTI devkit's background interpolation), so it is scored on every
  pixel like a dense method.

Under DDP the states are summed over ranks (torchmetrics); Lightning's distributed sampler may repeat a few pairs
to even out the ranks, so run the protocol on one device for the exact numbers.
"""

from __future__ import annotations

import csv
import json
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn
from torch.utils.data import DataLoader, Dataset, Subset

from vitlab.core.data import IMAGENET_MEAN, IMAGENET_STD, VitlabDataModule
from vitlab.core.errors import ConfigError

from .data import collate_common
from .datasets import ETH3DStereo, KITTIStereo, MiddleburyStereo, MissingDatasetFileError, StereoPairs
from .metrics import StereoMetrics

__all__ = [
    "BENCHMARKS",
    "Benchmark",
    "ZeroShotEvaluator",
    "ZeroShotStereoDataModule",
    "format_results_table",
    "sgbm_available",
    "sgbm_disparity",
]

#: benchmark key -> (metric key of StereoMetrics, its label, reduction, max disparity at full size)
BENCHMARKS: dict[str, tuple[str, str, str, float]] = {
    "kitti2012": ("d1", "D1", "pixel", 192.0),
    "kitti2015": ("d1", "D1", "pixel", 192.0),
    "middlebury2014": ("bad2", "bad-2.0", "image", 800.0),
    "middeval3": ("bad2", "bad-2.0", "image", 800.0),
    "middlebury2006": ("bad2", "bad-2.0", "image", 256.0),
    "middlebury2005": ("bad2", "bad-2.0", "image", 256.0),
    "eth3d": ("bad1", "bad-1.0", "image", 64.0),
}
_FACTORS = {"full": 1, "half": 2, "third": 3, "quarter": 4, "F": 1, "H": 2, "Q": 4}
SGBM_INSTALL = "pip install 'vitlab-stereo[sgbm]' (opencv-python-headless)"


@dataclass
class Benchmark:
    """One benchmark of the protocol: its dataset at the evaluated resolution and how it is scored."""

    key: str
    title: str
    root: str
    resolution: str
    dataset: Dataset
    metric: str
    metric_label: str
    reduction: str
    max_disparity: float
    has_noc: bool
    scale: float = 1.0
    notes: list[str] = field(default_factory=list)


# ---------------------------------------------------------------------------------------------------- SGBM
def sgbm_available() -> bool:
    try:
        import cv2  # noqa: F401
    except ImportError:
        return False
    return True


def _fill_background(d: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """Fill each row's holes with the smaller of the nearest valid disparities to the left and right."""
    H, W = d.shape
    idx = np.where(valid, np.arange(W)[None], -1)
    left = np.maximum.accumulate(idx, axis=1)
    ridx = np.where(valid, np.arange(W)[None], W)
    right = np.minimum.accumulate(ridx[:, ::-1], axis=1)[:, ::-1]
    rows = np.arange(H)[:, None]
    dl = np.where(left >= 0, d[rows, np.clip(left, 0, W - 1)], np.inf)
    dr = np.where(right < W, d[rows, np.clip(right, 0, W - 1)], np.inf)
    fill = np.minimum(dl, dr)
    out = np.where(valid, d, fill)
    return np.where(np.isfinite(out), out, 0.0).astype(np.float32)


def sgbm_disparity(left: np.ndarray, right: np.ndarray, max_disparity: float, block_size: int = 5) -> np.ndarray:
    """OpenCV StereoSGBM disparity ``(H, W)`` float32 of uint8 ``(H, W, 3)`` RGB views, holes filled (see above)."""
    try:
        import cv2
    except ImportError as err:
        raise ConfigError(f"SGBM reference: OpenCV (cv2) is not installed; {SGBM_INSTALL}") from err
    gray = [cv2.cvtColor(np.ascontiguousarray(x), cv2.COLOR_RGB2GRAY) for x in (left, right)]
    num = int(16 * math.ceil(max(float(max_disparity), 16.0) / 16.0))
    b = int(block_size)
    sgbm = cv2.StereoSGBM_create(minDisparity=0, numDisparities=num, blockSize=b, P1=8 * b * b, P2=32 * b * b,
                                 disp12MaxDiff=1, uniquenessRatio=10, speckleWindowSize=100, speckleRange=2,
                                 mode=cv2.STEREO_SGBM_MODE_SGBM_3WAY)
    # OpenCV leaves the first `num` columns without a match: pad both views on the left (edge-replicated) so every
    # pixel of the frame gets a disparity search, then crop the padding away
    padded = [cv2.copyMakeBorder(g, 0, 0, num, 0, cv2.BORDER_REPLICATE) for g in gray]
    raw = sgbm.compute(padded[0], padded[1])[:, num:].astype(np.float32) / 16.0
    return _fill_background(raw, raw > 0)


def _to_uint8_views(batch: dict[str, Tensor], normalized: bool) -> tuple[np.ndarray, np.ndarray]:
    """The batch's views back to uint8 ``(B, H, W, 3)`` arrays (undoing the device normalisation)."""
    out = []
    for key in ("image", "right"):
        x = batch[key].detach().float()
        if normalized:
            mean = torch.tensor(IMAGENET_MEAN, device=x.device).view(1, 3, 1, 1)
            std = torch.tensor(IMAGENET_STD, device=x.device).view(1, 3, 1, 1)
            x = x * std + mean
        out.append(x.mul(255.0).round().clamp(0, 255).to(torch.uint8).permute(0, 2, 3, 1).cpu().numpy())
    return out[0], out[1]


# ---------------------------------------------------------------------------------------------------- data
def _root(path: str, key: str) -> Path:
    p = Path(path)
    if not p.is_dir():
        raise MissingDatasetFileError(f"{p}: directory not found (data.{key}: the {key} root expected)")
    return p


class ZeroShotStereoDataModule(VitlabDataModule):
    """The zero-shot benchmarks (see the module docstring for the protocol): one named test loader each.

    A benchmark runs when its root is given (``None`` = not evaluated); a root that is not a folder of that
    benchmark's layout is a one-line error naming the path.

    Args:
        kitti2012: ``data_stereo_flow`` root (``training/colored_0, colored_1, disp_occ[, disp_noc]``).
        kitti2015: ``data_scene_flow`` root (``training/image_2, image_3, disp_occ_0[, disp_noc_0]``).
        middlebury2014: folder of ``<Scene>-{perfect,imperfect}/`` (``im0.png, im1.png, disp0.pfm[, disp1.pfm]``).
        middlebury2014_size: ``"half"`` (default) or ``"quarter"`` (made here from the full-size data).
        middeval3: MiddEval3 root (``training{F,H,Q}/<Scene>/``); ``middeval3_size``: ``"H"`` (default), ``"Q"``,
            ``"F"``.
        middlebury2006, middlebury2005: folder of ``<Scene>/`` at one size (``view1.png, view5.png, disp1.png[,
            disp5.png]``, e.g. the ``HalfSize`` folder); ``middlebury2006_size`` / ``middlebury2005_size``: that
            size, ``"half"`` (default), ``"full"`` or ``"third"``.
        eth3d: ETH3D low-res two-view root (``two_view_training[_gt]/``) or a flat folder of scene folders.
        scale: ``"auto"`` (default), ``"native"`` or a number (the scale rule above).
        max_disparity: per-benchmark overrides of the max disparity at the evaluated resolution, in px.
        reference: reference rows to add: ``"sgbm"`` (skipped with a message when OpenCV is absent) and
            ``"zero"`` (disparity 0 everywhere: the floor a model that does not match stays near).
        sgbm_block_size: SGBM block size (5).
        max_pairs: evaluate only the first N pairs of each benchmark (quick checks; ``None`` = all).
        num_workers: loader workers.
    """

    image_keys = ("image", "right")

    def __init__(
        self,
        kitti2012: str | None = None,
        kitti2015: str | None = None,
        middlebury2014: str | None = None,
        middlebury2014_size: str = "half",
        middeval3: str | None = None,
        middeval3_size: str = "H",
        middlebury2006: str | None = None,
        middlebury2006_size: str = "half",
        middlebury2005: str | None = None,
        middlebury2005_size: str = "half",
        eth3d: str | None = None,
        scale: float | str = "auto",
        max_disparity: dict[str, float] | None = None,
        reference: list[str] | None = None,
        sgbm_block_size: int = 5,
        max_pairs: int | None = None,
        num_workers: int = 0,
    ) -> None:
        super().__init__(batch_size=1, num_workers=num_workers, val_batch_size=1)
        if isinstance(scale, str) and scale not in ("auto", "native"):
            try:
                scale = float(scale)
            except ValueError:
                raise ConfigError(f"data.scale: expected 'auto', 'native' or a number > 0, got {scale!r}") from None
        if not isinstance(scale, str) and not float(scale) > 0:
            raise ConfigError(f"data.scale: expected 'auto', 'native' or a number > 0, got {scale!r}")
        self.scale = scale
        overrides = dict(max_disparity or {})
        unknown = sorted(set(overrides) - set(BENCHMARKS))
        if unknown:
            raise ConfigError(f"data.max_disparity: unknown benchmark(s) {unknown}; expected keys of "
                              f"{sorted(BENCHMARKS)}")
        self.reference = [str(r).lower() for r in (reference or [])]
        bad = sorted(set(self.reference) - {"sgbm", "zero"})
        if bad:
            raise ConfigError(f"data.reference: unknown method(s) {bad}; expected a list of 'sgbm', 'zero'")
        self.sgbm_block_size = int(sgbm_block_size)
        if max_pairs is not None and max_pairs < 1:
            raise ConfigError(f"data.max_pairs: expected an integer >= 1 or null, got {max_pairs!r}")
        sizes = {"middlebury2014": (middlebury2014_size, ("half", "quarter")),
                 "middeval3": (middeval3_size, ("F", "H", "Q")),
                 "middlebury2006": (middlebury2006_size, ("full", "half", "third")),
                 "middlebury2005": (middlebury2005_size, ("full", "half", "third"))}
        for key, (value, allowed) in sizes.items():
            if value not in allowed:
                raise ConfigError(f"data.{key}_size: expected one of {list(allowed)}, got {value!r}")
        roots = {"kitti2012": kitti2012, "kitti2015": kitti2015, "middlebury2014": middlebury2014,
                 "middeval3": middeval3, "middlebury2006": middlebury2006, "middlebury2005": middlebury2005,
                 "eth3d": eth3d}
        self.benchmarks: list[Benchmark] = []
        for key, root in roots.items():
            if root is None:
                continue
            resolution = sizes[key][0] if key in sizes else "full"
            self.benchmarks.append(self._build(key, str(root), resolution, overrides.get(key), max_pairs))
        if not self.benchmarks:
            raise ConfigError("ZeroShotStereoDataModule: no benchmark root given; set at least one of "
                              f"data.{{{', '.join(roots)}}}")

    @staticmethod
    def _dataset(key: str, root: str, resolution: str) -> StereoPairs:
        p = _root(root, key)
        if key in ("kitti2012", "kitti2015"):
            return KITTIStereo(str(p), year=int(key[-4:]), split="train")
        if key == "eth3d":
            return ETH3DStereo(str(p), split="train")
        if key == "middeval3":
            return MiddleburyStereo(str(p), version="eval3", split="train", size=resolution)
        if key == "middlebury2014":
            return MiddleburyStereo(str(p), version="2014", split="train", size=resolution, rights=("im1",),
                                    derive_occlusion=True)
        return MiddleburyStereo(str(p), version=key[-4:], split="train", size=resolution, derive_occlusion=True)

    def _build(self, key: str, root: str, resolution: str, max_disp: float | None, max_pairs: int | None) -> Benchmark:
        metric, label, reduction, full_max = BENCHMARKS[key]
        ds = self._dataset(key, root, resolution)
        has_noc = any(p[4] is not None for p in ds.pairs)
        if max_disp is None:
            max_disp = full_max / _FACTORS[resolution]
        elif not float(max_disp) > 0:
            raise ConfigError(f"data.max_disparity.{key}: expected a disparity > 0 px, got {max_disp!r}")
        names = {"kitti2012": "KITTI 2012", "kitti2015": "KITTI 2015", "middlebury2014": "Middlebury 2014",
                 "middeval3": "MiddEval3", "middlebury2006": "Middlebury 2006", "middlebury2005": "Middlebury 2005",
                 "eth3d": "ETH3D"}
        dataset: Dataset = ds
        if max_pairs is not None and len(ds) > max_pairs:
            dataset = Subset(ds, range(max_pairs))
        return Benchmark(key=key, title=names[key], root=root, resolution=resolution, dataset=dataset, metric=metric,
                         metric_label=label, reduction=reduction, max_disparity=float(max_disp), has_noc=has_noc)

    def resolve_scales(self, trained_max_disparity: float | None) -> list[float]:
        """Each benchmark's inference scale under :attr:`scale` (also stored on the benchmarks, with a note)."""
        for b in self.benchmarks:
            b.notes = [n for n in b.notes if not n.startswith("scale")]
            if self.scale == "native":
                b.scale = 1.0
            elif self.scale == "auto":
                if trained_max_disparity is None:
                    b.scale = 1.0
                    b.notes.append("scale 1: the checkpoint states no trained disparity range")
                else:
                    b.scale = min(1.0, float(trained_max_disparity) / b.max_disparity)
            else:
                b.scale = float(self.scale)
        return [b.scale for b in self.benchmarks]

    def methods(self) -> list[str]:
        """The rows' methods: ``model`` plus the references that can run here."""
        return ["model"] + [r for r in self.reference if r != "sgbm" or sgbm_available()]

    # -- VitlabDataModule
    def make_dataset(self, split: str) -> Any:
        return {b.key: b.dataset for b in self.benchmarks} if split == "test" else None

    def collate_fn(self, split: str) -> Any:
        return collate_common

    def test_dataloader(self) -> list[DataLoader]:
        """One loader per benchmark, in :attr:`benchmarks` order (``dataloader_idx`` = the benchmark's index)."""
        return [self.loader(b.dataset, "test", stream=i) for i, b in enumerate(self.benchmarks)]


# ---------------------------------------------------------------------------------------------------- scoring
def _fmt(v: float | None, nd: int = 2) -> str:
    return "-" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{v:.{nd}f}"


def format_results_table(rows: Sequence[dict]) -> str:
    """The rows as a fixed-width text table (what ``vitlab test`` prints)."""
    head = ["method", "benchmark", "res", "pairs", "scale", "metric", "noc", "all", "EPE noc", "EPE all"]
    body = [[r["method"], r["benchmark"], r["resolution"], str(r["pairs"]), _fmt(r["scale"], 3), r["metric"],
             _fmt(r["metric_noc"]), _fmt(r["metric_all"]), _fmt(r["epe_noc"], 3), _fmt(r["epe_all"], 3)]
            for r in rows]
    widths = [max(len(h), *(len(b[i]) for b in body)) if body else len(h) for i, h in enumerate(head)]
    line = lambda cells: "  ".join(c.ljust(w) if i < 3 or i == 5 else c.rjust(w)  # noqa: E731
                                   for i, (c, w) in enumerate(zip(cells, widths)))
    return "\n".join([line(head), line(["-" * w for w in widths]), *(line(b) for b in body)])


def _values(metric: StereoMetrics) -> dict[str, float | None]:
    """``compute()`` as floats, ``None`` for a metric without valid pixels (NaN)."""
    return {k: (None if math.isnan(float(v)) else float(v)) for k, v in metric.compute().items()}


class ZeroShotEvaluator(nn.Module):
    """Per benchmark and method, two :class:`StereoMetrics` (all valid GT, non-occluded), DDP-synced sums.

    Built by :class:`~vitlab.stereo.StereoMatching` at the start of a test run whose DataModule is a
    :class:`ZeroShotStereoDataModule`; :meth:`step` scores one batch, :meth:`finish` computes, logs, prints and
    writes the rows.
    """

    def __init__(self, benchmarks: Sequence[Benchmark], methods: Sequence[str], sgbm_block_size: int = 5) -> None:
        super().__init__()
        self.benchmarks, self.methods = list(benchmarks), list(methods)
        self.sgbm_block_size = sgbm_block_size
        self.scores = nn.ModuleDict({
            f"{i}_{m}": nn.ModuleDict({"all": StereoMetrics(reduction=b.reduction),
                                       "noc": StereoMetrics(reduction=b.reduction)})
            for i, b in enumerate(self.benchmarks) for m in self.methods})

    @classmethod
    def for_datamodule(cls, dm: ZeroShotStereoDataModule, trained_max_disparity: float | None) -> ZeroShotEvaluator:
        dm.resolve_scales(trained_max_disparity)
        methods = dm.methods()
        if "sgbm" in dm.reference and "sgbm" not in methods:
            print(f"vitlab: zero-shot: SGBM reference row skipped: OpenCV (cv2) is not installed; {SGBM_INSTALL}",
                  flush=True)
        return cls(dm.benchmarks, methods, dm.sgbm_block_size)

    def update(self, index: int, method: str, pred: Tensor, batch: dict[str, Tensor]) -> None:
        pair = self.scores[f"{index}_{method}"]
        gt = batch["disparity"]
        pred = pred.to(gt.device)
        pair["all"].update(pred, gt)
        if "occlusion" in batch:
            pair["noc"].update(pred, gt, mask=~batch["occlusion"].bool())

    def step(self, module, batch: dict[str, Tensor], index: int, normalized: bool = True) -> Tensor:
        """Score the module (at the benchmark's scale) and the references on one batch; returns the disparity."""
        b = self.benchmarks[index]
        disp, _ = module.predict_disparity(batch["image"], batch["right"], scale=b.scale)
        self.update(index, "model", disp, batch)
        if "zero" in self.methods:
            self.update(index, "zero", torch.zeros_like(disp), batch)
        if "sgbm" in self.methods:
            lefts, rights = _to_uint8_views(batch, normalized)
            pred = torch.stack([torch.from_numpy(sgbm_disparity(lv, rv, b.max_disparity, self.sgbm_block_size))
                                for lv, rv in zip(lefts, rights)])[:, None]
            self.update(index, "sgbm", pred, batch)
        return disp

    def rows(self, model_name: str = "model") -> list[dict]:
        """Compute every row (collective under DDP: call on every rank)."""
        out = []
        for m in self.methods:
            for i, b in enumerate(self.benchmarks):
                pair = self.scores[f"{i}_{m}"]
                full = _values(pair["all"])
                noc = _values(pair["noc"]) if b.has_noc else None
                out.append({
                    "method": model_name if m == "model" else m, "benchmark": b.key, "title": b.title,
                    "resolution": b.resolution, "pairs": len(b.dataset),
                    "scale": b.scale if m == "model" else 1.0, "max_disparity": b.max_disparity,
                    "metric": b.metric_label, "metric_key": b.metric, "reduction": b.reduction,
                    "metric_noc": noc[b.metric] if noc else None, "metric_all": full[b.metric],
                    "epe_noc": noc["epe"] if noc else None, "epe_all": full["epe"],
                    "all": full, "noc": noc, "notes": list(b.notes) if m == "model" else [],
                })
        return out

    def finish(self, module) -> list[dict]:
        """Compute, log (``test/<benchmark>[/<reference>]/<metric>_{noc,all}``), print and write the rows."""
        rows = self.rows(type(module).__name__)
        for r in rows:
            prefix = f"test/{r['benchmark']}/" + ("" if r["method"] == type(module).__name__ else f"{r['method']}/")
            values = {f"{r['metric_key']}_all": r["metric_all"], "epe_all": r["epe_all"],
                      f"{r['metric_key']}_noc": r["metric_noc"], "epe_noc": r["epe_noc"]}
            module.log_dict({prefix + k: float(v) for k, v in values.items() if v is not None}, sync_dist=False,
                            add_dataloader_idx=False)
        trainer = module.trainer
        if trainer.is_global_zero:
            print("vitlab: zero-shot results\n" + format_results_table(rows), flush=True)
            for b in self.benchmarks:
                for note in b.notes:
                    print(f"vitlab: zero-shot {b.key}: {note}", flush=True)
            folder = Path(trainer.default_root_dir)
            paths = write_results(rows, folder, {
                "model": type(module).__name__, "checkpoint": trainer.ckpt_path,
                "train_max_disparity": getattr(module, "train_max_disparity", None),
                "roots": {b.key: b.root for b in self.benchmarks}})
            print(f"vitlab: zero-shot results written to {paths[0]} and {paths[1]}", flush=True)
        for pair in self.scores.values():
            for metric in pair.values():
                metric.reset()
        return rows


CSV_COLUMNS = ("method", "benchmark", "resolution", "pairs", "scale", "max_disparity", "metric", "metric_noc",
               "metric_all", "epe_noc", "epe_all")


def write_results(rows: Sequence[dict], folder: Path, meta: dict, name: str = "zero_shot") -> tuple[Path, Path]:
    """``<folder>/<name>.json`` (rows with every metric, plus ``meta``) and ``<folder>/<name>.csv`` (the table)."""
    folder.mkdir(parents=True, exist_ok=True)
    js, cs = folder / f"{name}.json", folder / f"{name}.csv"
    js.write_text(json.dumps({**meta, "rows": list(rows)}, indent=2, default=str) + "\n")
    with open(cs, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(CSV_COLUMNS)
        for r in rows:
            w.writerow(["" if r[c] is None else (f"{r[c]:.6g}" if isinstance(r[c], float) else r[c])
                        for c in CSV_COLUMNS])
    return js, cs
