"""``vitlab data check <dataset> <root>``: is a copy of a dataset complete and readable, before a long run starts.

A dataset a vitlab reader reads is registered here as a :class:`DatasetLayout` (core's below, sibling packages
in their own ``datasets.py``, as readers declare their :class:`~vitlab.core.data.FormatContract`): its split
lists with the sizes its own documentation gives, every folder a complete copy holds (one per task of a
multi-task dataset), and how its reader opens a split. :func:`check_dataset` then

* lists each split through the reader (a missing folder or list file is *missing*);
* reads every sample (``quick``: a few, evenly spaced) through the same reader, so every file passes the
  contract its reader declares; each failure is sorted as *missing* (a listed file is absent), *unreadable*
  (the decoder failed: truncated or corrupt) or *out-of-contract* (decoded, but wrong bit depth, channels,
  values or size);
* compares each split's size with the documented one: a difference is a warning (a subset or the tiny test
  fixtures are legitimate), an error with ``strict``.

Every :class:`~vitlab.core.data.VitlabDataModule` runs the same sample inspection on a few samples of each split
in ``setup`` (:func:`sampled_check`), so a wrong root fails in seconds with one line instead of at the first
batch.
"""

from __future__ import annotations

import argparse
import re
import sys
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from vitlab.core.data.contracts import ContractViolation, EmptyGroundTruthWarning
from vitlab.core.data.sampling import sample_seeding
from vitlab.core.errors import DatasetFormatError

__all__ = [
    "DATASETS",
    "DatasetLayout",
    "DatasetReport",
    "Problem",
    "check_dataset",
    "inspect_sample",
    "main",
    "register_dataset",
    "sample_indices",
    "sampled_check",
]

PROBLEM_KINDS = ("missing", "unreadable", "out-of-contract")


@dataclass(frozen=True)
class DatasetLayout:
    """How one dataset lies on disk, for the data check.

    Args:
        name: the name ``vitlab data check`` takes (``"ade20k"``).
        title: the dataset as its authors name it.
        splits: documented size of each split (the names the reader's ``split`` argument takes).
        open_split: ``(root, split) -> dataset`` through the reader vitlab trains with: ``len()`` is the
            split's size and ``dataset[i]`` reads (and checks) every file of sample ``i``, without augmentation.
        folders: folders (relative to the root) a complete copy holds, one per task where a dataset has several;
            the first one's files are read by every sample.
        source: where the documented sizes come from.
        root_names: the folder name(s) the official archive unpacks to (a hint when the root is its parent).
    """

    name: str
    title: str
    splits: Mapping[str, int]
    open_split: Callable[[Path, str], Any]
    folders: tuple[str, ...]
    source: str
    root_names: tuple[str, ...] = ()


#: every registered dataset, by name
DATASETS: dict[str, DatasetLayout] = {}


def register_dataset(layout: DatasetLayout) -> DatasetLayout:
    """Make ``layout`` known to ``vitlab data check`` (a second layout under a taken name is an error)."""
    old = DATASETS.get(layout.name)
    if old is not None and (old.title, dict(old.splits), old.folders) != (layout.title, dict(layout.splits),
                                                                            layout.folders):
        raise ValueError(f"register_dataset: the name {layout.name!r} is taken by {old.title}")
    DATASETS[layout.name] = layout
    return layout


@dataclass(frozen=True)
class Problem:
    """One failure: its kind (one of :data:`PROBLEM_KINDS`), split and the reader's one-line message."""

    kind: str
    split: str
    message: str


@dataclass
class DatasetReport:
    """What :func:`check_dataset` found."""

    layout: DatasetLayout
    root: Path
    quick: bool
    strict: bool
    found: dict[str, int] = field(default_factory=dict)
    checked: dict[str, int] = field(default_factory=dict)
    problems: list[Problem] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    @property
    def count_mismatches(self) -> list[str]:
        return [s for s, n in self.found.items() if n != self.layout.splits.get(s, n)]

    @property
    def ok(self) -> bool:
        """Whether a run on this copy would get past its data (``strict``: also the documented sizes)."""
        return not self.problems and not (self.strict and self.count_mismatches)

    def by_kind(self, kind: str) -> list[Problem]:
        return [p for p in self.problems if p.kind == kind]

    def lines(self, shown: int = 3) -> list[str]:
        """The printed report: one line per split, then found / missing / unreadable / out-of-contract."""
        lay = self.layout
        mode = f"quick: {sum(self.checked.values())} samples read" if self.quick else "every sample read"
        out = [f"vitlab data check: {lay.title} at {self.root} ({mode})"]
        for split, documented in lay.splits.items():
            if split not in self.found:
                out.append(f"  {split:<12} not listed (see missing)")
                continue
            n = self.found[split]
            note = "" if n == documented else ("  ERROR: differs from the documented size" if self.strict
                                               else "  warning: differs from the documented size")
            out.append(f"  {split:<12} {n:>9,} samples   documented {documented:>9,}{note}")
        out.append(f"  found:           {sum(self.found.values()):,} samples in {len(self.found)} of "
                   f"{len(lay.splits)} splits (documented sizes: {lay.source})")
        for kind in PROBLEM_KINDS:
            items = self.by_kind(kind)
            out.append(f"  {kind + ':':<16} {len(items)}")
            out += [f"    {_short(p.message)}" for p in items[:shown]]
            if len(items) > shown:
                out.append(f"    ... and {len(items) - shown} more")
        out += [f"  warning: {w}" for w in self.warnings[:shown]]
        if len(self.warnings) > shown:
            out.append(f"  ... and {len(self.warnings) - shown} more warnings")
        if self.ok:
            out.append("result: OK" + (" (with warnings)" if self.warnings or self.count_mismatches else ""))
        else:
            why = "; ".join(f"{len(self.by_kind(k))} {k}" for k in PROBLEM_KINDS if self.by_kind(k))
            if self.strict and self.count_mismatches:
                why = "; ".join(filter(None, [why, f"split sizes differ: {', '.join(self.count_mismatches)}"]))
            out.append(f"result: FAILED ({why}): a run on this copy would fail")
        return out


def _short(message: str, limit: int = 240) -> str:
    line = " ".join(part.strip() for part in str(message).splitlines() if part.strip())
    return line if len(line) <= limit else line[: limit - 3] + "..."


_UNREADABLE = re.compile(r"cannot decode|truncat|header|not a PNG|not a regular file|trailing bytes|cannot read"
                         r"|corrupt|not a .*annotation", re.I)


def classify(err: BaseException) -> str | None:
    """The problem kind of a reader's exception; None for an exception no file explains (a bug: re-raise it)."""
    if isinstance(err, FileNotFoundError):
        return "missing"
    if isinstance(err, ContractViolation):
        return "out-of-contract"
    if isinstance(err, DatasetFormatError):
        return "unreadable" if err.__cause__ is not None or _UNREADABLE.search(str(err)) else "out-of-contract"
    if isinstance(err, (OSError, ValueError, EOFError, SyntaxError)):
        return "unreadable"  # a decoder's own error that no reader wrapped
    return None


def inspect_sample(dataset: Any, index: int, split: str) -> tuple[Problem | None, list[str]]:
    """Read sample ``index`` of ``dataset``; (its problem or None, the ground-truth warnings it raised)."""
    # augmentations draw from this sample's own seed; the global random state is left as it was
    with warnings.catch_warnings(record=True) as caught, sample_seeding(0, 0, index):
        warnings.simplefilter("always", EmptyGroundTruthWarning)
        try:
            dataset[index]
            problem = None
        except Exception as err:
            kind = classify(err)
            if kind is None:
                raise
            problem = Problem(kind, split, str(err))
    notes = [str(w.message) for w in caught if issubclass(w.category, EmptyGroundTruthWarning)]
    for w in caught:  # warnings that are not the check's business reach the user as usual
        if not issubclass(w.category, EmptyGroundTruthWarning):
            warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
    return problem, notes


def sample_indices(n: int, k: int | None) -> list[int]:
    """All of ``range(n)`` (``k`` None), or ``k`` evenly spaced indices including the first and the last."""
    if k is None or n <= k:
        return list(range(n))
    if k <= 1:
        return [0]
    return sorted({round(i * (n - 1) / (k - 1)) for i in range(k)})


def _open(layout: DatasetLayout, root: Path, split: str) -> tuple[Any, Problem | None]:
    try:
        return layout.open_split(root, split), None
    except Exception as err:
        kind = classify(err)
        if kind is None:
            raise
        # a split that cannot be listed (folder, list file or counterparts absent) is missing
        return None, Problem("unreadable" if kind == "unreadable" else "missing", split, str(err))


def check_dataset(name: str, root: str | Path, splits: Sequence[str] | None = None, quick: bool = False,
                  strict: bool = False, samples: int = 8, progress: bool = False) -> DatasetReport:
    """Check the copy of dataset ``name`` at ``root`` (see the module docstring); never raises for the data."""
    if name not in DATASETS:
        known = ", ".join(sorted(DATASETS)) or "none"
        raise DatasetFormatError(f"vitlab data check: unknown dataset {name!r}; registered: {known}")
    layout = DATASETS[name]
    root = Path(root)
    report = DatasetReport(layout, root, quick, strict)
    wanted = list(splits) if splits else list(layout.splits)
    unknown = [s for s in wanted if s not in layout.splits]
    if unknown:
        raise DatasetFormatError(f"vitlab data check {name}: unknown split(s) {unknown}; {layout.title} has "
                                 f"{list(layout.splits)}")
    if not root.is_dir():
        report.problems.append(Problem("missing", "-", f"{root}: dataset root not found"))
        return report
    for folder in layout.folders:
        if not (root / folder).is_dir():
            inside = [n for n in layout.root_names if (root / n).is_dir()]
            hint = f" (the root may be {root / inside[0]})" if inside else ""
            report.problems.append(Problem("missing", "-", f"{root / folder}: folder not found, a complete copy of "
                                                           f"{layout.title} has it{hint}"))
    bar = None
    opened = {}
    for split in wanted:
        ds, problem = _open(layout, root, split)
        if problem is not None:
            report.problems.append(problem)
            continue
        opened[split] = ds
        report.found[split] = len(ds)
    plan = {s: sample_indices(len(ds), samples if quick else None) for s, ds in opened.items()}
    if progress and not quick:
        from tqdm import tqdm

        bar = tqdm(total=sum(len(v) for v in plan.values()), desc=f"checking {name}", unit="sample",
                   file=sys.stderr, dynamic_ncols=True)
    for split, indices in plan.items():
        for i in indices:
            problem, notes = inspect_sample(opened[split], i, split)
            if problem is not None:
                report.problems.append(problem)
            report.warnings += notes
            if bar is not None:
                bar.update(1)
        report.checked[split] = len(indices)
    if bar is not None:
        bar.close()
    return report


def sampled_check(owner: str, split: str, dataset: Any, k: int) -> None:
    """``setup``'s check: read ``k`` evenly spaced samples of ``dataset``; the first problem is a one-line error."""
    for i in sample_indices(len(dataset), k):
        problem, _ = inspect_sample(dataset, i, split)
        if problem is not None:
            raise DatasetFormatError(
                f"{owner}: the {split} split has {'an' if problem.kind[0] in 'aeiou' else 'a'} {problem.kind} file: "
                f"{_short(problem.message)}",
                hint="`vitlab data check <dataset> <root>` lists every problem of a copy")


# ----------------------------------------------------------------------------------------------------------- CLI

def main(argv: Sequence[str] | None = None) -> int:
    """``vitlab data check ...`` / ``python -m vitlab.core.data check ...``; returns the exit status."""
    from vitlab.core.cli import load_plugins  # sibling packages register their datasets on import

    load_plugins()
    parser = argparse.ArgumentParser(prog="vitlab data", description="check a dataset copy before a run")
    sub = parser.add_subparsers(dest="command", required=True)
    chk = sub.add_parser("check", help="verify layout, split sizes and every file of a dataset copy")
    chk.add_argument("dataset", help="registered name (`vitlab data list`)")
    chk.add_argument("root", help="the dataset root a config's `root` would name")
    chk.add_argument("--split", action="append", help="check only this split (repeatable)")
    chk.add_argument("--quick", action="store_true", help="read a few evenly spaced samples per split, not all")
    chk.add_argument("--samples", type=int, default=8, help="samples per split with --quick (default 8)")
    chk.add_argument("--strict", action="store_true", help="a split size other than the documented one fails")
    sub.add_parser("list", help="the registered datasets, their splits and documented sizes")
    args = parser.parse_args(list(argv) if argv is not None else None)
    if args.command == "list":
        for name in sorted(DATASETS):
            lay = DATASETS[name]
            sizes = ", ".join(f"{s} {n:,}" for s, n in lay.splits.items())
            print(f"{name:<16} {lay.title}: {sizes}")
        return 0
    try:
        report = check_dataset(args.dataset, args.root, args.split, args.quick, args.strict, args.samples,
                               progress=sys.stderr.isatty() or not args.quick)
    except DatasetFormatError as err:
        print(_short(str(err)), file=sys.stderr)
        return 2
    print("\n".join(report.lines()), flush=True)
    return 0 if report.ok else 1


# ------------------------------------------------------------------------------------------- core's datasets

def _dense(cls_name: str, **kwargs: Any) -> Callable[[Path, str], Any]:
    def open_split(root: Path, split: str) -> Any:
        from vitlab.core.data import dense

        dm = getattr(dense, cls_name)(str(root), **kwargs)
        return dense.DenseFilesDataset(dm.pairs(split), dm.target_key, dm.decoder(), None)

    return open_split


def _imagenet(root: Path, split: str) -> Any:
    from vitlab.core.data.imagefolder import ImageFolderDictDataset

    return ImageFolderDictDataset(root, split)


register_dataset(DatasetLayout(
    "imagenet", "ImageNet-1k (ILSVRC 2012, folder layout)", {"train": 1_281_167, "val": 50_000}, _imagenet,
    ("train", "val"), "ILSVRC 2012 challenge page / Russakovsky et al. 2015, Table 2"))
register_dataset(DatasetLayout(
    "ade20k", "ADE20K SceneParsing (ADEChallengeData2016)", {"training": 20_210, "validation": 2_000},
    _dense("ADE20KDataModule"), ("images/training", "annotations/training", "images/validation",
                                 "annotations/validation"),
    "MIT Scene Parsing Benchmark page (sceneparsing.csail.mit.edu)", ("ADEChallengeData2016",)))
register_dataset(DatasetLayout(
    "cityscapes", "Cityscapes fine (labelTrainIds)", {"train": 2_975, "val": 500}, _dense("CityscapesDataModule"),
    ("leftImg8bit", "gtFine"), "cityscapes-dataset.com / Cordts et al. 2016 (2,975 train, 500 val, 1,525 test)"))
register_dataset(DatasetLayout(
    "nyu", "NYU Depth v2 (mmseg depth layout)", {"train": 795, "test": 654}, _dense("NYUDepthDataModule"),
    ("images", "annotations"), "Silberman et al. 2012, the 795/654 split of the 1,449 labelled frames"))
