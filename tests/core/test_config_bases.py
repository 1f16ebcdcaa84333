"""Recipes name a shared base (``_base_``); the CLI composes it into ``--config base --config recipe``.

The structural tests walk every shipped recipe: each builds on a base under ``configs/_base/`` and
restates none of the base's values, so a run default lives in one file.
"""

from __future__ import annotations

import contextlib
import io
from pathlib import Path

import pytest
import yaml

from vitlab.core.cli import build_cli
from vitlab.core.config_bases import BASE_KEY, config_chain, expand_config_args
from vitlab.core.errors import ConfigError

REPO = Path(__file__).resolve().parents[2]
CONFIGS = REPO / "configs"
BASE_DIR = CONFIGS / "_base"


def _recipes() -> list[Path]:
    """Every shipped config with a trainer section (tuner overlays only add to a recipe)."""
    return sorted(p for p in CONFIGS.rglob("*.yaml") if "_base" not in p.parts
                  and "trainer" in (yaml.safe_load(p.read_text()) or {}))


def _merged(files: list[Path]) -> dict:
    """The mapping the files give when applied in order, the way jsonargparse merges them (lists replaced)."""
    def merge(into: dict, new: dict) -> dict:
        for key, value in new.items():
            key = key.removesuffix("+")
            if isinstance(value, dict) and isinstance(into.get(key), dict):
                merge(into[key], value)
            else:
                into[key] = value
        return into
    out: dict = {}
    for f in files:
        merge(out, {k: v for k, v in (yaml.safe_load(f.read_text()) or {}).items() if k != BASE_KEY})
    return out


def _leaves(d: dict, prefix: str = "") -> dict[str, object]:
    out = {}
    for key, value in d.items():
        if isinstance(value, dict):
            out.update(_leaves(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


@pytest.mark.parametrize("recipe", _recipes(), ids=lambda p: str(p.relative_to(CONFIGS)))
def test_every_recipe_builds_on_a_shared_base_and_copies_none_of_it(recipe):
    chain = config_chain(recipe)
    assert chain[-1] == recipe and any(BASE_DIR in p.parents for p in chain[:-1]), \
        f"{recipe.relative_to(REPO)} names no base under configs/_base/ (`{BASE_KEY}: ../_base/trainer.yaml`)"
    base, own = _leaves(_merged(chain[:-1])), _leaves(_merged([recipe]))
    copied = {k: v for k, v in own.items() if k in base and base[k] == v}
    assert not copied, f"{recipe.relative_to(REPO)} restates values of its base: {copied}"
    callbacks = (yaml.safe_load(recipe.read_text())["trainer"].get("callbacks+") or [])
    base_cbs = _merged(chain[:-1])["trainer"].get("callbacks") or []
    assert not [cb for cb in callbacks if cb in base_cbs], f"{recipe.relative_to(REPO)} appends a base callback again"


def _print_config(*args: str) -> dict:
    out = io.StringIO()
    with contextlib.redirect_stdout(out), pytest.raises(SystemExit):
        build_cli(["fit", *args, "--print_config"])
    return yaml.safe_load(out.getvalue())


def test_print_config_shows_the_merged_recipe():
    recipe = CONFIGS / "uda" / "quickstart_clda.yaml"
    printed = _print_config("--config", str(recipe))["trainer"]
    assert printed["logger"]["class_path"] == "lightning.pytorch.loggers.WandbLogger"  # from the base
    assert printed["logger"]["init_args"]["project"] == "vitlab"
    assert printed["logger"]["init_args"]["name"] == "uda_quickstart_clda"  # from the recipe
    assert printed["accelerator"] == "auto" and printed["max_steps"] == 600
    classes = [cb["class_path"] for cb in printed["callbacks"]]
    assert classes == ["lightning.pytorch.callbacks.LearningRateMonitor", "vitlab.core.ModelCheckpoint"]


def _write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def test_bases_chain_and_lists_apply_in_order_once(tmp_path):
    a = _write(tmp_path / "b" / "a.yaml", "trainer: {max_steps: 1, log_every_n_steps: 1}\n")
    b = _write(tmp_path / "b" / "b.yaml", "_base_: a.yaml\ntrainer: {max_steps: 2}\n")
    c = _write(tmp_path / "b" / "c.yaml", "_base_: a.yaml\ntrainer: {log_every_n_steps: 3}\n")
    recipe = _write(tmp_path / "r" / "recipe.yaml", "_base_:\n  - ../b/b.yaml\n  - ../b/c.yaml\n"
                    "trainer: {max_epochs: 4}  # the recipe's own\n")
    assert config_chain(recipe) == [a, b, c, recipe]
    args = expand_config_args(["fit", "--config", str(recipe), "--trainer.max_epochs", "5"])
    assert args[:3] == ["fit", "--config", str(a)] and args[-2:] == ["--trainer.max_epochs", "5"]
    assert args.count("--config") == 4 and BASE_KEY not in " ".join(args)
    printed = _print_config("--config", str(recipe), "--model", "vitlab.core.SemanticSegmentation",
                            "--data", "vitlab.core.data.SyntheticScenesDataModule")["trainer"]
    assert (printed["max_steps"], printed["log_every_n_steps"], printed["max_epochs"]) == (2, 3, 4)


def test_a_loop_and_a_missing_base_are_one_line_errors_naming_the_file(tmp_path):
    loop = _write(tmp_path / "loop.yaml", "_base_: other.yaml\n")
    _write(tmp_path / "other.yaml", "_base_: loop.yaml\n")
    with pytest.raises(ConfigError, match="loops back on itself"):
        config_chain(loop)
    missing = _write(tmp_path / "missing.yaml", "_base_: ../nowhere.yaml\ntrainer: {}\n")
    with pytest.raises(ConfigError, match=r"missing\.yaml: `_base_` '../nowhere.yaml' names no file"):
        expand_config_args(["fit", "--config", str(missing)])
    wrong = _write(tmp_path / "wrong.yaml", "_base_: {a: 1}\n")
    with pytest.raises(ConfigError, match=r"wrong\.yaml: `_base_` must be a path or a list of paths"):
        config_chain(wrong)


@pytest.mark.parametrize("where", ["recipe", "base"])
def test_a_yaml_error_names_the_file_and_line(tmp_path, where):
    base = _write(tmp_path / "base.yaml", "trainer:\n  max_steps: [1\n" if where == "base" else "trainer: {}\n")
    recipe = _write(tmp_path / "recipe.yaml", "_base_: base.yaml\n" + ("trainer:\n  max_steps: [1\n"
                                                                       if where == "recipe" else "trainer: {}\n"))
    bad = base if where == "base" else recipe
    with pytest.raises(ConfigError) as err:
        build_cli(["fit", "--config", str(recipe)], run=False)
    message = str(err.value)
    assert "\n" not in message and "<unicode string>" not in message
    line = 3 if where == "base" else 4  # the stream ends inside the open list
    assert message.startswith(f"config {bad}: invalid YAML at line {line}, column 1:"), message
