"""The READMEs say true things: every ``vitlab ...`` command they show runs, and each package README lists its configs.

Every fenced code block of the top README and of each ``packages/<pkg>/README.md`` is read (discovered, not listed);
each line starting with ``vitlab`` (``\\`` continuations joined, comments dropped) is run in-process with the
``vitlab`` entry point, in the order the README gives them, in a working directory laid out as a user's would be:
``configs/`` (the repository's), ``data/<name>`` (the tiny real-format fixtures under ``tests/data``), ``photos/``
(a few images of one's own) and the ``runs/`` the earlier commands of the same README wrote. Only the sizes change:
the tiny overrides of ``tests/shipped/<pkg>.yaml`` and two steps on CPU, as ``tests/test_shipped_configs.py`` fits
each config. Placeholders are filled in: ``<run>`` is the run the README's own earlier fit of that config (or of the
method it names) made, or a fit made here first; ``/path/to/X`` and ``../shared/data`` name the fixtures.

A line that cannot run as written (a fragment with ``...``) must be listed in :data:`NOT_RUN` with its reason; an
entry that no README holds any longer fails, so the list cannot go stale.
"""

from __future__ import annotations

import gc
import re
import shlex
from pathlib import Path

import numpy as np
import pytest
import yaml
from PIL import Image

from vitlab.core.cli import main

from .test_shipped_configs import ENTRIES, _data_spec, _materialise, tiny_data_args

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared" / "data"
READMES = [REPO / "README.md", *sorted((REPO / "packages").glob("*/README.md"))]
DATA = REPO / "tests" / "data"

#: the folders a user's ``data/`` holds, as the READMEs name them -> the fixture standing in for each
DATA_LINKS = {
    "data/cityscapes": DATA / "cityscapes",
    "data/PASCAL_MT": DATA / "pascal_context" / "PASCAL_MT",
    "data/my_dataset": DATA / "segfolder" / "source",
    "data/my_source": DATA / "segfolder" / "source",
    "data/my_target": DATA / "segfolder" / "target",
    "data/kitti/data_stereo_flow": DATA / "kitti2012" / "data_stereo_flow",
    "data/kitti/data_scene_flow": DATA / "kitti2015" / "data_scene_flow",
    "data/middlebury/2014": DATA / "middlebury2014",
    "data/middlebury/2006/HalfSize": DATA / "middlebury2006",
    "data/middlebury/2005/HalfSize": DATA / "middlebury2005",
    "data/eth3d": DATA / "eth3d",
}
#: absolute placeholder paths -> fixture
PATHS = {"/path/to/PASCAL_MT": DATA / "pascal_context" / "PASCAL_MT"}
#: which fit a named placeholder run comes from
NAMED_RUNS = {"<UniTT run>": "configs/stereo/unitt_quickstart.yaml", "<MaDis run>": "configs/stereo/madis_quickstart.yaml"}

#: command lines that cannot run as written (by how they start), with why (each must still appear in a README)
NOT_RUN = {
    "vitlab predict ... --data StereoPairsDataModule --data.pairs pairs.txt": "a fragment: the options after `...` "
    "extend the full predict command above it, which runs",
    "vitlab test --config configs/stereo/zero_shot.yaml --ckpt_path <run> ": "a template of the three "
    "zero-shot commands above it, which run; its data roots are the real samples",
}


def readme_commands(readme: Path) -> list[str]:
    """The ``vitlab ...`` lines of the fenced blocks of ``readme``, continuations joined, comments dropped."""
    out = []
    for block in re.findall(r"^```[^\n]*\n(.*?)^```", readme.read_text(), re.S | re.M):
        for line in re.sub(r"\\\n\s*", " ", block).splitlines():
            line = line.split(" #")[0].strip()
            if line.startswith("vitlab "):
                out.append(" ".join(line.split()))
    return out


def _not_run(command: str) -> bool:
    return any(command == k or command.startswith(k) for k in NOT_RUN)


def _workspace(tmp: Path) -> None:
    (tmp / "configs").symlink_to(REPO / "configs")
    for rel, target in DATA_LINKS.items():
        (tmp / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp / rel).symlink_to(target)
    photos = tmp / "photos"
    photos.mkdir()
    rng = np.random.default_rng(0)
    img = rng.integers(0, 255, (48, 64, 3), dtype=np.uint8)
    Image.fromarray(img).save(photos / "a_L.png")
    Image.fromarray(np.roll(img, -3, axis=1)).save(photos / "a_R.png")


def _configs(tokens: list[str]) -> list[str]:
    return [tokens[i + 1] for i, t in enumerate(tokens[:-1]) if t == "--config"]


def _tiny(tokens: list[str], tmp: Path) -> list[str]:
    """The command with its configs at fixture roots and the shipped-config test's tiny overrides appended."""
    configs = _configs(tokens)
    name = configs[0].removeprefix("configs/") if configs else None
    spec = ENTRIES.get(name, {}) if name else {}
    tokens = list(tokens)
    if spec.get("roots") or spec.get("replace"):  # the config with its data roots at the fixtures
        i = tokens.index("--config") + 1
        (tmp / "materialised").mkdir(exist_ok=True)
        tokens[i] = str(_materialise(REPO / "configs" / name, spec, tmp / "materialised"))
    sub = tokens[1]
    args = ["--trainer.accelerator", "cpu", "--trainer.devices", "1", "--trainer.num_nodes", "1",
            "--trainer.strategy", "auto"]
    if sub == "fit":
        args += ["--trainer.max_steps", "2", "--trainer.limit_val_batches", "1", "--trainer.num_sanity_val_steps", "0",
                 "--trainer.accumulate_grad_batches", "1"]
    else:
        args += [f"--trainer.limit_{'val' if sub == 'validate' else sub}_batches", "1"]
    extra = [str(REPO / a) if str(a).startswith("tests/data/") else str(a) for a in spec.get("args") or []]
    own_data = "--data" in tokens  # the README swaps the DataModule: its options are the README's
    pairs = list(zip(extra[::2], extra[1::2], strict=False))
    args += [x for k, v in pairs if not (own_data and k.startswith("--data.")) for x in (k, v)]
    if not own_data and configs:
        cls, init = _data_spec([Path(c) if Path(c).is_absolute() else tmp / c for c in _configs(tokens)])
        args += tiny_data_args(cls, init)
    return tokens[1:] + args


def _run(argv: list[str]) -> None:
    try:
        main(argv)
    except SystemExit as exit_:
        if exit_.code not in (0, None):
            raise AssertionError(f"exit status {exit_.code}") from None


def _run_dirs(tmp: Path) -> set[Path]:
    return {p.parent for p in (tmp / "runs").rglob("config.yaml")} if (tmp / "runs").is_dir() else set()


def _fill(command: str, fitted: dict[str, Path]) -> list[str] | None:
    """Placeholders -> paths, then the tokens; None when a path the command needs is not available here."""
    config = (_configs(shlex.split(command)) or [None])[0]
    for key, fit in NAMED_RUNS.items():
        command = command.replace(key, str(fitted[fit])) if key in command else command
    if "<run>" in command:
        command = command.replace("runs/<run>/version_0", str(fitted[config])).replace("<run>", str(fitted[config]))
    for key, value in PATHS.items():
        command = command.replace(key, str(value))
    out = []
    for t in shlex.split(command):
        if t.startswith("../shared/data"):
            if not SHARED.is_dir():
                return None
            t = str(SHARED) + t.removeprefix("../shared/data")
        out.append(t)
    return out


def _needs_run(command: str) -> list[str]:
    """The configs whose trained run the command names by placeholder."""
    need = [fit for key, fit in NAMED_RUNS.items() if key in command]
    if "<run>" in command:
        need.append(_configs(shlex.split(command))[0])
    return need


def _fit(config: str, tmp: Path, fitted: dict[str, Path]) -> None:
    before = _run_dirs(tmp)
    _run(_tiny(["vitlab", "fit", "--config", config], tmp))
    fitted[config] = max(_run_dirs(tmp) - before, key=lambda p: p.stat().st_mtime)


@pytest.mark.parametrize("readme", READMES, ids=[str(r.relative_to(REPO)) for r in READMES])
def test_readme_commands_run(readme, tmp_path, monkeypatch):
    commands = [c for c in readme_commands(readme) if not _not_run(c)]
    if not commands:
        pytest.skip(f"{readme.relative_to(REPO)} shows no vitlab command")
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_CONSOLE", "off")
    monkeypatch.chdir(tmp_path)
    _workspace(tmp_path)
    fitted: dict[str, Path] = {}
    skipped = []
    for command in commands:
        tokens = shlex.split(command)
        for config in _needs_run(command):
            if config not in fitted:
                _fit(config, tmp_path, fitted)
        filled = _fill(command, fitted)
        if filled is None:
            skipped.append(command)
            continue
        before = _run_dirs(tmp_path)
        try:
            _run(_tiny(filled, tmp_path) if tokens[1] != "data" else filled[1:])
        except Exception as err:  # noqa: BLE001 - report which README line failed, with the cause
            raise AssertionError(f"{readme.relative_to(REPO)}: `{command}` failed: {err}") from err
        if tokens[1] == "fit" and "--print_config" not in tokens:
            new = _run_dirs(tmp_path) - before
            if new:
                fitted[_configs(tokens)[0]] = max(new, key=lambda p: p.stat().st_mtime)
        gc.collect()  # the checkpoints go at teardown (conftest); later commands read them
    if skipped:
        pytest.skip(f"needs ../shared/data: {skipped}")


def test_not_run_entries_are_in_a_readme():
    shown = {c for r in READMES for c in readme_commands(r)}
    stale = [k for k in NOT_RUN if not any(c == k or c.startswith(k) for c in shown)]
    assert not stale, f"NOT_RUN lists commands no README shows any more: {stale}"


PACKAGES = sorted(p.parent.name for p in (REPO / "packages").glob("*/README.md"))


@pytest.mark.parametrize("pkg", PACKAGES)
def test_package_readme_lists_every_config(pkg):
    text = (REPO / "packages" / pkg / "README.md").read_text()
    folder = REPO / "configs" / pkg
    configs = sorted(str(p.relative_to(folder)) for p in folder.rglob("*.yaml")) if folder.is_dir() else []
    missing = [c for c in configs if f"`{c}`" not in text and f"configs/{pkg}/{c}" not in text]
    assert not missing, f"packages/{pkg}/README.md does not list {missing}"
    for c in configs:  # and each listed config parses as YAML
        assert isinstance(yaml.safe_load((folder / c).read_text()), dict), c
