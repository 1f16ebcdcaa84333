"""The packages install as shipped: wheels of core + peft into a fresh virtualenv, with dependency resolution.

Only the two local wheels and the package registry are used (no ``--no-deps``), so a dependency the code
needs but the pyproject forgets fails here. torch is pinned to the build the Makefile installs; when the
test environment holds that build, its files are shared read-only with the fresh venv (see
:func:`_share_torch_stack`) instead of installing ~4 GB again — everything else resolves from the index. The venv then fits the peft quickstart for two
steps through the installed ``vitlab`` script with W&B offline, and finally ``pip install -e .`` at the
repository root adds the remaining packages (the ``vitlab`` meta-distribution).

The venv is created once per module and the tests are ``slow``. Each phase's duration is printed
(``pytest -s``) and recorded as a junit property; ``--no-compile`` skips byte-compiling.
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("fresh_venv")]  # one module fixture, one worker

REPO = Path(__file__).resolve().parents[1]
SIBLING = "peft"
ALL = ["core", "pretrain", "peft", "stereo", "mtl", "uda"]


def _torch_pin() -> list[str]:
    """The ``TORCH :=`` requirements of the Makefile (one pin for ``make install`` and this test)."""
    match = re.search(r"^TORCH\s*:=\s*(.+)$", (REPO / "Makefile").read_text(), flags=re.M)
    assert match, "Makefile has no `TORCH :=` line"
    return shlex.split(match.group(1))


_TORCH_STACK = re.compile(r"^(torch|torchgen|functorch|torchvision|triton|nvidia|cuda)([-_.].*)?$")


def _share_torch_stack(root: Path, py: Path) -> bool:
    """Make this environment's pinned torch build visible to the fresh venv, read-only, instead of
    installing its ~4 GB again: links to torch, torchvision, triton and the CUDA wheels (code and
    ``dist-info``) in one folder that a ``.pth`` file adds to the venv's path. pip then sees the pin as
    satisfied and still resolves every other requirement (numpy, pillow, lightning, timm, ...) from the
    package index, so an undeclared dependency still fails. Falls back to a full install when this
    environment does not hold the pinned build."""
    import importlib.metadata as md

    pins = dict(p.split("==") for p in _torch_pin() if "==" in p)
    try:
        if any(md.version(name) != version for name, version in pins.items()):
            return False
    except md.PackageNotFoundError:
        return False
    site = Path(md.distribution("torch").locate_file(""))
    stack = root / "torch_stack"
    stack.mkdir()
    for entry in site.iterdir():
        if _TORCH_STACK.match(entry.name):
            (stack / entry.name).symlink_to(entry)
    purelib = subprocess.run([str(py), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                             capture_output=True, text=True, check=True).stdout.strip()
    (Path(purelib) / "vitlab_test_torch_stack.pth").write_text(str(stack) + "\n")
    return True


def _clean_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("VIRTUAL_ENV", "PYTHONPATH", "PYTHONHOME")}
    env.update(extra)
    return env


def _run(cmd: list[str], timeout: float, **kwargs) -> tuple[subprocess.CompletedProcess, float]:
    start = time.perf_counter()
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, **kwargs)
    elapsed = time.perf_counter() - start
    assert res.returncode == 0, f"{' '.join(map(str, cmd))}\n{res.stdout[-3000:]}\n{res.stderr[-5000:]}"
    return res, elapsed


@pytest.fixture(scope="module")
def fresh_venv(tmp_path_factory) -> dict:
    root = tmp_path_factory.mktemp("fresh")
    timings: dict[str, float] = {}
    wheels = root / "wheels"
    _, timings["build_wheels"] = _run(
        [sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--no-build-isolation", "-w", str(wheels),
         str(REPO / "packages" / "core"), str(REPO / "packages" / SIBLING)],
        timeout=600,
    )
    venv = root / "venv"
    _, timings["create_venv"] = _run([sys.executable, "-m", "venv", str(venv)], timeout=300)
    py = venv / "bin" / "python"
    timings["shared_torch_stack"] = float(_share_torch_stack(root, py))
    local = sorted(str(w) for w in wheels.glob("vitlab_*.whl"))
    assert len(local) == 2, local
    _, timings["pip_install"] = _run(
        [str(py), "-m", "pip", "install", "--quiet", "--disable-pip-version-check", "--no-compile", *_torch_pin(),
         *local],
        timeout=1800, env=_clean_env(),
    )
    print(f"\nfresh venv: {timings}")
    return {"root": root, "venv": venv, "py": py, "timings": timings}


def test_core_and_sibling_wheels_resolve_and_fit_quickstart(fresh_venv, record_property):
    py, venv, root = fresh_venv["py"], fresh_venv["venv"], fresh_venv["root"]
    env = _clean_env()
    res, _ = _run([str(py), "-m", "pip", "check"], timeout=300, env=env)

    others = [p for p in ALL if p not in ("core", SIBLING)]
    probe = (
        "import importlib, sys\n"
        f"import vitlab.core, vitlab.{SIBLING}\n"
        "assert vitlab.core.__file__.startswith(sys.prefix), vitlab.core.__file__\n"
        f"for name in {others!r}:\n"
        "    try:\n"
        "        importlib.import_module('vitlab.' + name)\n"
        "    except ModuleNotFoundError:\n"
        "        continue\n"
        "    raise SystemExit('vitlab.' + name + ' should not be installed')\n"
        "print('ok')\n"
    )
    res, _ = _run([str(py), "-c", probe], timeout=300, env=env, cwd=root)
    assert res.stdout.strip().endswith("ok")

    # a config of a package that is not installed: one line naming the distribution, no usage dump
    res = subprocess.run([str(venv / "bin" / "vitlab"), "fit", "--config",
                          str(REPO / "configs" / "pretrain" / "quickstart.yaml")],
                         capture_output=True, text=True, timeout=600, env=env, cwd=root)
    lines = [ln for ln in res.stderr.splitlines() if ln.strip()]
    assert res.returncode == 1 and len(lines) == 1, res.stderr[-3000:]
    assert "need vitlab-pretrain" in lines[0] and "pip install packages/pretrain" in lines[0], lines

    work = root / "quickstart"
    work.mkdir()
    fit_env = _clean_env(WANDB_MODE="offline", WANDB_SILENT="true", HF_HUB_OFFLINE="1", WANDB_DIR=str(work))
    cmd = [str(venv / "bin" / "vitlab"), "fit", "--config", str(REPO / "configs" / SIBLING / "quickstart.yaml"),
           "--trainer.max_steps", "2", "--trainer.limit_val_batches", "1", "--trainer.accelerator", "cpu",
           "--trainer.default_root_dir", str(work / "runs")]
    res, fit_s = _run(cmd, timeout=1200, env=fit_env, cwd=work)
    fresh_venv["timings"]["fit_2_steps"] = fit_s
    print(f"\nfresh venv timings (s): {fresh_venv['timings']}")
    for key, value in fresh_venv["timings"].items():
        record_property(f"seconds_{key}", round(value, 1))

    assert list(work.rglob("offline-run-*")), "the WandbLogger wrote no offline run"
    assert list(work.rglob("last.ckpt")), "no last.ckpt written"


def test_root_install_adds_all_six_packages(fresh_venv, record_property):
    """``pip install -e .`` at the repository root installs every package of the checkout."""
    py = fresh_venv["py"]
    env = _clean_env()
    # the build backend once in the venv instead of one isolated build environment per package (time only)
    _run([str(py), "-m", "pip", "install", "--quiet", "--disable-pip-version-check", "hatchling>=1.26",
          "editables>=0.3"],
         timeout=600, env=env)
    _, install_s = _run([str(py), "-m", "pip", "install", "--quiet", "--disable-pip-version-check", "--no-compile",
                         "--no-build-isolation", "-e", str(REPO)], timeout=1800, env=env, cwd=fresh_venv["root"])
    record_property("seconds_root_install", round(install_s, 1))
    print(f"\nroot `pip install -e .`: {install_s:.0f} s")
    _run([str(py), "-m", "pip", "check"], timeout=300, env=env)
    probe = ("from importlib.metadata import version\n"
             f"for p in {ALL!r}:\n"
             "    version('vitlab-' + p)\n"
             "    __import__('vitlab.' + p)\n"
             "print('ok')\n")
    res, _ = _run([str(py), "-c", probe], timeout=300, env=env, cwd=fresh_venv["root"])
    assert res.stdout.strip().endswith("ok")
