"""Each distribution builds on its own, shares the PEP 420 namespace, and installs with core alone."""

from __future__ import annotations

import email
import re
import subprocess
import sys
import textwrap
import zipfile
from pathlib import Path

import pytest

pytestmark = pytest.mark.xdist_group("wheels")  # the module-scoped wheels are built once, on one worker

REPO = Path(__file__).resolve().parents[2]
SIBLINGS = ["pretrain", "peft", "stereo", "mtl", "uda"]
ALL = ["core", *SIBLINGS]


@pytest.fixture(scope="module")
def wheels(tmp_path_factory) -> dict[str, Path]:
    out = tmp_path_factory.mktemp("wheels")
    cmd = [sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--no-build-isolation", "-w", str(out),
           *[str(REPO / "packages" / p) for p in ALL]]
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr[-3000:]
    found = {p: next(out.glob(f"vitlab_{p}-*.whl")) for p in ALL}
    return found


def _metadata(wheel: Path) -> email.message.Message:
    with zipfile.ZipFile(wheel) as zf:
        name = next(n for n in zf.namelist() if n.endswith(".dist-info/METADATA"))
        return email.message_from_bytes(zf.read(name))


@pytest.mark.parametrize("pkg", ALL)
def test_wheel_layout(wheels, pkg):
    with zipfile.ZipFile(wheels[pkg]) as zf:
        names = zf.namelist()
        entry_points = zf.read(next(n for n in names if n.endswith("entry_points.txt"))).decode()
    assert "vitlab/__init__.py" not in names, "a vitlab/__init__.py would break the shared namespace"
    assert f"vitlab/{pkg}/__init__.py" in names
    assert not [n for n in names if n.startswith("vitlab/") and not n.startswith(f"vitlab/{pkg}/")]
    assert "[vitlab.plugins]" in entry_points and f"{pkg} = vitlab.{pkg}" in entry_points
    meta = _metadata(wheels[pkg])
    assert meta["Version"] == _metadata(wheels["core"])["Version"], "versions move in lockstep"
    requires = meta.get_all("Requires-Dist") or []
    if pkg == "core":
        assert any(r.startswith("torch") for r in requires)
        assert "vitlab = vitlab.core.cli:main" in entry_points and "lightning = vitlab.core.cli:main" in entry_points
    else:
        assert any(r.replace(" ", "") in ("vitlab-core>=0.1,<0.2", "vitlab-core<0.2,>=0.1") for r in requires), requires
        siblings = {re.split(r"[<>=!~;\s]", r, maxsplit=1)[0] for r in requires} - {"vitlab-core"}
        allowed = {"vitlab-peft"} if pkg == "mtl" else set()
        assert {s for s in siblings if s.startswith("vitlab-")} <= allowed, f"{pkg} depends on {siblings}"


@pytest.mark.parametrize("pkg", SIBLINGS)
def test_core_plus_one_sibling_installs_alone(wheels, pkg, tmp_path):
    """`pip install packages/core packages/<pkg>` with nothing else: it imports, the others do not."""
    target = tmp_path / "site"
    chosen = ["core", pkg] + (["peft"] if pkg == "mtl" else [])
    cmd = [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-compile", "--target", str(target),
           *[str(wheels[p]) for p in chosen]]
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr[-3000:]
    others = [p for p in SIBLINGS if p not in chosen]
    probe = textwrap.dedent(f"""
        import importlib, sys
        # hide the editable checkouts of the monorepo; keep third-party packages (torch, lightning, ...)
        sys.path = [{str(target)!r}] + [p for p in sys.path if "packages" not in p.split("/")]
        for name in {chosen!r}:
            mod = importlib.import_module("vitlab." + name)
            assert mod.__file__.startswith({str(target)!r}), mod.__file__
        for name in {others!r}:
            try:
                importlib.import_module("vitlab." + name)
            except ModuleNotFoundError:
                pass
            else:
                raise SystemExit("vitlab." + name + " should not be importable")
        print("ok")
    """)
    res = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=300)
    assert res.returncode == 0 and res.stdout.strip().endswith("ok"), res.stderr[-3000:]


def test_lightning_bound_excludes_releases_with_their_own_lightning_script(wheels):
    """lightning up to 2.5.0.post0 installs a ``lightning`` console script; ours must never fight it."""
    from packaging.requirements import Requirement

    for pkg in ALL:
        for req in map(Requirement, _metadata(wheels[pkg]).get_all("Requires-Dist") or []):
            if req.name == "lightning":
                assert not req.specifier.contains("2.5.0.post0") and req.specifier.contains("2.5.1"), (pkg, req)
            if req.name == "timm":  # timm's ViT Block takes attn_mask from 1.0.16 on
                assert not req.specifier.contains("1.0.15") and req.specifier.contains("1.0.16"), (pkg, req)
