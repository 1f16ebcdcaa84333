"""`vitlab data check` on the real-format fixtures: a good copy and broken copies of every registered dataset.

The datasets are discovered from the registry (after every installed vitlab package is imported); each one's
fixture is the folder under tests/data that holds every folder its layout names.
"""

from __future__ import annotations

import dataclasses
import runpy
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from vitlab.core.cli import load_plugins, main
from vitlab.core.data import DATASETS, DatasetFormatError, check_dataset
from vitlab.core.data.check import sample_indices

DATA = Path(__file__).resolve().parents[1] / "data"
DATA_SUFFIXES = (".png", ".jpg", ".jpeg", ".npy", ".pfm", ".mat")

load_plugins()
NAMES = sorted(DATASETS)


def fixture_root(name: str) -> Path:
    """The fixture of a registered dataset: a folder (depth <= 2 under tests/data) with all its layout's folders;
    among several, the one whose path names the dataset."""
    layout = DATASETS[name]
    found = [p for p in sorted(DATA.glob("*")) + sorted(DATA.glob("*/*"))
             if p.is_dir() and all((p / f).is_dir() for f in layout.folders)]
    if not found:
        pytest.fail(f"registered dataset {name!r} has no fixture under tests/data holding {layout.folders}")
    found.sort(key=lambda p: (name.split("_")[0] not in str(p.relative_to(DATA)).lower(), len(p.parts)))
    return found[0]


def copy_of(name: str, tmp_path: Path) -> Path:
    dst = tmp_path / "copy"
    shutil.copytree(fixture_root(name), dst)
    return dst


def test_every_dataset_vitlab_reads_is_registered():
    expected = {"imagenet", "ade20k", "cityscapes", "nyu", "pascal_context_mt", "nyud_mt", "gta5", "synthia",
                "kitti2012", "kitti2015", "sceneflow", "eth3d"}
    assert expected <= set(DATASETS), sorted(expected - set(DATASETS))
    for layout in DATASETS.values():
        assert layout.folders and layout.source and all(n > 0 for n in layout.splits.values())


README = Path(__file__).resolve().parents[2] / "packages" / "core" / "README.md"


@pytest.mark.parametrize("name", NAMES)
def test_core_readme_lists_the_documented_sizes(name):
    """The README's dataset table is the registry's: every registered dataset, with its sizes and their source."""
    layout = DATASETS[name]
    rows = [r for r in README.read_text().splitlines() if r.startswith(f"| `{name}` |")]
    assert rows, f"packages/core/README.md: no row for the registered dataset {name!r}"
    splits = ", ".join(f"{k} {v:,}" for k, v in layout.splits.items())
    assert rows[0] == f"| `{name}` | {layout.title} | {splits} | {layout.source} |", rows[0]


@pytest.mark.parametrize("name", NAMES)
def test_good_copy_passes_and_size_differences_are_warnings(name, tmp_path, capsys):
    root = copy_of(name, tmp_path)
    report = check_dataset(name, root)
    assert report.problems == [], report.lines()
    assert report.ok and set(report.found) == set(DATASETS[name].splits)
    assert all(report.checked[s] == n for s, n in report.found.items())  # the full check reads every sample
    assert report.count_mismatches == sorted(report.found, key=list(report.found).index)  # tiny fixtures
    with pytest.raises(SystemExit) as exit_:
        main(["data", "check", name, str(root)])
    assert exit_.value.code == 0
    out = capsys.readouterr().out
    assert "result: OK" in out and "warning: differs from the documented size" in out
    with pytest.raises(SystemExit) as exit_:
        main(["data", "check", name, str(root), "--strict"])
    assert exit_.value.code == 1
    assert "split sizes differ" in capsys.readouterr().out


@pytest.mark.parametrize("name", NAMES)
def test_wrong_count_against_the_documented_size(name, tmp_path, monkeypatch):
    root = copy_of(name, tmp_path)
    found = check_dataset(name, root, quick=True).found
    layout = DATASETS[name]
    monkeypatch.setitem(DATASETS, name, dataclasses.replace(layout, splits=dict(found)))
    exact = check_dataset(name, root, quick=True, strict=True)
    assert exact.ok and exact.count_mismatches == []
    first = next(iter(found))
    monkeypatch.setitem(DATASETS, name, dataclasses.replace(layout, splits={**found, first: found[first] + 1}))
    assert check_dataset(name, root, quick=True).ok  # a warning only
    strict = check_dataset(name, root, quick=True, strict=True)
    assert not strict.ok and strict.count_mismatches == [first]
    assert any("ERROR: differs" in line for line in strict.lines())


@pytest.mark.parametrize("name", NAMES)
def test_missing_folder_is_an_error_naming_it(name, tmp_path, capsys):
    for i, folder in enumerate(DATASETS[name].folders):
        root = copy_of(name, tmp_path / str(i))
        shutil.rmtree(root / folder)
        report = check_dataset(name, root, quick=True)
        assert not report.ok, folder
        assert any(p.kind == "missing" and str(root / folder) in p.message for p in report.problems), \
            (folder, report.lines())
    with pytest.raises(SystemExit) as exit_:
        main(["data", "check", name, str(root), "--quick"])
    assert exit_.value.code == 1
    out = capsys.readouterr().out
    assert "result: FAILED" in out and str(root / folder) in out


@pytest.mark.parametrize("name", NAMES)
def test_truncated_file_is_unreadable(name, tmp_path):
    root = copy_of(name, tmp_path)
    first = DATASETS[name].folders[0]
    victim = next(p for p in sorted((root / first).rglob("*")) if p.suffix.lower() in DATA_SUFFIXES)
    data = victim.read_bytes()
    victim.write_bytes(data[: len(data) // 2])
    report = check_dataset(name, root)
    assert not report.ok
    hits = [p for p in report.problems if str(victim) in p.message]
    assert hits and {p.kind for p in hits} == {"unreadable"}, report.lines()


def test_out_of_contract_label_is_reported_apart(tmp_path):
    root = copy_of("cityscapes", tmp_path)
    label = sorted((root / "gtFine").rglob("*_gtFine_labelTrainIds.png"))[0]
    ids = np.asarray(Image.open(label)).copy()
    ids[0, 0] = 50  # no Cityscapes train id
    Image.fromarray(ids).save(label)
    report = check_dataset("cityscapes", root)
    kinds = {p.kind for p in report.problems}
    assert kinds == {"out-of-contract"} and str(label) in report.problems[0].message


def test_quick_reads_a_few_evenly_spaced_samples():
    assert sample_indices(100, 4) == [0, 33, 66, 99]
    assert sample_indices(3, 8) == [0, 1, 2]
    report = check_dataset("kitti2015", fixture_root("kitti2015"), quick=True, samples=2)
    assert report.checked == {"train": 2} and report.found["train"] > 2


def test_unknown_dataset_and_split_name_the_known_ones():
    with pytest.raises(DatasetFormatError, match="registered: .*ade20k"):
        check_dataset("ade21k", "nowhere")
    with pytest.raises(DatasetFormatError, match=r"unknown split\(s\) \['train'\].*training"):
        check_dataset("ade20k", "nowhere", splits=["train"])


def test_setup_reads_a_few_samples_and_fails_in_one_line(tmp_path):
    from vitlab.core.data import ADE20KDataModule

    root = copy_of("ade20k", tmp_path)
    image = sorted((root / "images" / "training").iterdir())[-1]  # the last sample: setup reads first and last
    image.write_bytes(image.read_bytes()[:100])
    dm = ADE20KDataModule(str(root), size=32, batch_size=2, num_workers=0)
    with pytest.raises(DatasetFormatError) as err:
        dm.setup("fit")
    message = str(err.value)
    assert "\n" not in message and message.startswith("ADE20KDataModule: the train split has an unreadable file")
    assert str(image) in message


def test_python_dash_m_entry_point_lists_datasets(monkeypatch, capsys):
    monkeypatch.setattr(sys, "argv", ["python -m vitlab.core.data", "list"])
    with pytest.raises(SystemExit) as exit_:  # what `python -m vitlab.core.data list` runs, in this process
        runpy.run_module("vitlab.core.data", run_name="__main__")
    assert exit_.value.code == 0
    out = capsys.readouterr().out
    assert "ade20k" in out and "20,210" in out and "sceneflow" in out
