"""A config naming a class of a vitlab package that is not installed fails in one line naming the distribution."""

from __future__ import annotations

import importlib
import inspect
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from vitlab.core.plugins import PACKAGES, PLUGIN_CLASSES, format_missing, missing_plugins

REPO = Path(__file__).resolve().parents[1]


def _run_cli_without(blocked: list[str], args: list[str], tmp_path: Path) -> subprocess.CompletedProcess:
    """``vitlab.core.cli.main(args)`` in a fresh interpreter where the ``blocked`` packages cannot be imported."""
    code = textwrap.dedent(f"""
        import sys
        for name in {blocked!r}:
            sys.modules["vitlab." + name] = None  # as if the distribution were not installed
        from vitlab.core.cli import main
        main({args!r})
    """)
    return subprocess.run([sys.executable, "-W", "ignore", "-c", code], capture_output=True, text=True,
                          timeout=300, cwd=tmp_path)


def test_uninstalled_package_is_named_in_one_line(tmp_path):
    """Through the CLI: exit status 1, one line on stderr, no usage dump, no traceback."""
    args = ["fit", "--config", str(REPO / "configs" / "pretrain" / "quickstart.yaml")]
    res = _run_cli_without(["pretrain"], args, tmp_path)
    assert res.returncode == 1, res.stderr[-3000:]
    lines = [ln for ln in res.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1, res.stderr[-3000:]
    assert "usage:" not in res.stderr and "Traceback" not in res.stderr
    assert lines[0] == (
        f"vitlab: vitlab.pretrain.MAE, vitlab.pretrain.RandomPatchMask (config {args[2]}) need vitlab-pretrain, "
        "not installed: pip install vitlab-pretrain (from a vitlab checkout: pip install packages/pretrain)")


def test_short_names_on_the_command_line_and_in_config_files(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "vitlab.stereo", None)
    monkeypatch.setitem(sys.modules, "vitlab.pretrain", None)
    cfg = tmp_path / "c.yaml"
    cfg.write_text("model:\n  class_path: StereoMatching\ndata:\n  class_path: vitlab.core.data.SyntheticScenesDataModule\n")
    assert missing_plugins(["fit", "--config", str(cfg)]) == [("StereoMatching", "stereo", f"config {cfg}")]
    assert missing_plugins(["fit", "--model", "MAE", "--data=vitlab.core.data.SyntheticScenesDataModule"]) == [
        ("MAE", "pretrain", "argument --model")]
    assert missing_plugins(["fit", "--model", "{class_path: SimMIM}"]) == [("SimMIM", "pretrain", "argument --model")]
    # a short name only counts where a class is expected
    assert missing_plugins(["fit", "--trainer.logger.init_args.name", "MAE"]) == []


def test_installed_packages_and_foreign_names_pass():
    """Everything is installed here: nothing is reported; non-vitlab and unknown names are left to LightningCLI."""
    args = ["fit", "--config", str(REPO / "configs" / "stereo" / "quickstart.yaml"), "--model", "MAE",
            "--trainer.logger", "lightning.pytorch.loggers.CSVLogger", "--data", "NotAVitlabClass"]
    assert missing_plugins(args) == []
    assert missing_plugins({"model": {"class_path": "vitlab.peft.LoRA"}}) == []


def test_dict_config_and_message_for_two_packages(monkeypatch):
    monkeypatch.setitem(sys.modules, "vitlab.uda", None)
    monkeypatch.setitem(sys.modules, "vitlab.mtl", None)
    cfg = {"model": {"class_path": "vitlab.uda.Something", "init_args": {"net": "vitlab.mtl.Net"}}}
    missing = missing_plugins(cfg)
    assert missing == [("vitlab.uda.Something", "uda", "config"), ("vitlab.mtl.Net", "mtl", "config")]
    assert format_missing(missing) == (
        "vitlab: vitlab.uda.Something (config) needs vitlab-uda; vitlab.mtl.Net (config) needs vitlab-mtl, "
        "not installed: pip install vitlab-uda vitlab-mtl (from a vitlab checkout: pip install packages/uda packages/mtl)")


@pytest.mark.parametrize("package", [p for p in PACKAGES if p != "core"])
def test_short_name_table_matches_package_exports(package):
    """PLUGIN_CLASSES lists exactly the public classes of each installed package (short names resolve)."""
    try:
        module = importlib.import_module(f"vitlab.{package}")
    except ModuleNotFoundError:
        pytest.skip(f"vitlab-{package} is not installed here")
    exported = {n for n in getattr(module, "__all__", []) if inspect.isclass(getattr(module, n, None))}
    assert PLUGIN_CLASSES[package] == exported, (
        f"update vitlab.core.plugins.PLUGIN_CLASSES[{package!r}]: "
        f"add {sorted(exported - PLUGIN_CLASSES[package])}, drop {sorted(PLUGIN_CLASSES[package] - exported)}")


def test_every_plugin_package_is_known():
    """A new vitlab package registered in the plugin group must be added to PLUGIN_CLASSES."""
    from importlib.metadata import entry_points

    registered = {ep.name for ep in entry_points(group="vitlab.plugins")}
    assert registered <= set(PACKAGES), registered - set(PACKAGES)
