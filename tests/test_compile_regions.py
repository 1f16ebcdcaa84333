"""``compile: true`` covers every shipped model: most parameters in compiled regions, no graph break, no recompile
once training is under way.

The shipped configs are discovered as :mod:`test_shipped_configs` discovers them (its ``ENTRIES`` and ``fit_args``,
with its tiny data overrides) and grouped by model class. One config per class (synthetic data, and among those the
one whose model section names the most classes: a PEFT tuner, an MTO masking strategy) is fitted for 3 steps with
``--model.init_args.compile true`` and the ``eager`` backend: dynamo still traces, guards and counts graph breaks
and recompiles, but generates no code (seconds on a CPU). Asserted per model class:

* the regions that actually ran compiled hold >= 85 % of the model's parameters (trainable and frozen), so the
  share is not one of regions that exist but are never entered (a block called through a method, not as a
  module);
* no graph break (``torch._dynamo.utils.counters["graph_break"]`` stays empty);
* step 3 compiles no new graph: every recompile (train/eval mode, shapes, a teacher under ``no_grad``) happens in
  the first two steps (exceptions, with their reason, in :data:`LATE_GRAPHS`);
* no region hits dynamo's recompile limit (``fail_on_recompile_limit_hit``): past it a region runs eager silently.
"""

from __future__ import annotations

import gc
import importlib.util
import os
from pathlib import Path

import pytest
import torch
import torch._dynamo
import yaml
from lightning.pytorch import Callback
from torch._dynamo.utils import counters

from vitlab.core.cli import build_cli
from vitlab.core.config_bases import config_chain
from vitlab.core.perf import compiled_parameter_share

MIN_SHARE = 0.85
STEPS = 3

#: Graphs a model class may still compile after step 2, with why: keep it short.
LATE_GRAPHS: dict[str, tuple[int, str]] = {
    "vitlab.stereo.UniTTStereo": (1, "the first step whose sampled mask ratio rounds to 0 runs unmasked: its RoPE "
                                     "positions are (N, 2), not (B, N', 2), so the blocks compile that variant once"),
}


def _load_shipped():
    """``tests/test_shipped_configs.py`` by path (the test folder is not a package under importlib import mode)."""
    path = Path(__file__).with_name("test_shipped_configs.py")
    spec = importlib.util.spec_from_file_location("_vitlab_shipped_configs", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


shipped = _load_shipped()


def _class_paths(node) -> list[str]:
    if isinstance(node, dict):
        own = [str(node["class_path"])] if "class_path" in node else []
        return own + [c for v in node.values() for c in _class_paths(v)]
    if isinstance(node, list):
        return [c for v in node for c in _class_paths(v)]
    return []


def _signature(name: str) -> tuple[str, ...]:
    """The model class first, then the sorted class paths below it, over the config, its bases and overlay."""
    spec = shipped.ENTRIES[name]
    files = [shipped.CONFIGS / name]
    if spec.get("base"):
        files.insert(0, shipped.CONFIGS / Path(name).parts[0] / spec["base"])
    model_class, inner = None, set()
    for f in [c for path in files for c in config_chain(path)]:
        model = (yaml.safe_load(f.read_text()) or {}).get("model") or {}
        if isinstance(model, dict) and model.get("class_path"):
            model_class = model["class_path"]
        inner.update(_class_paths(model.get("init_args") or {}) if isinstance(model, dict) else [])
    return (str(model_class), *sorted(inner))


def _pick(name: str) -> tuple:
    """Synthetic data first (no fixture roots), then the config that builds the most classes (a tuner, a
    masking strategy on top of the model: more code on the compiled path), then a quickstart, then by name."""
    spec = shipped.ENTRIES[name]
    return bool(spec.get("roots") or spec.get("replace")), -len(_signature(name)), "quickstart" not in name, name


def _groups() -> dict[str, str]:
    """One config per model class among the shipped configs."""
    groups: dict[str, list[str]] = {}
    for name, spec in shipped.ENTRIES.items():
        if spec.get("xfail"):
            continue  # cannot fit as shipped (see tests/shipped)
        groups.setdefault(_signature(name)[0], []).append(name)
    return {cls: min(names, key=_pick) for cls, names in sorted(groups.items())}


GROUPS = _groups()


class _Probe(Callback):
    """Counts, per training step, the graphs dynamo compiled; and which compiled regions were entered."""

    def __init__(self) -> None:
        self.frames: list[int] = []
        self.entered: set[int] = set()
        self._last = 0

    def on_train_start(self, trainer, pl_module) -> None:
        for sub in pl_module.modules():
            if sub._compiled_call_impl is not None:
                sub._compiled_call_impl = self._counting(sub._compiled_call_impl, id(sub))
        self._last = int(counters["stats"]["unique_graphs"])

    def _counting(self, compiled, key: int):
        def call(*args, **kwargs):
            self.entered.add(key)
            return compiled(*args, **kwargs)

        return call

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        now = int(counters["stats"]["unique_graphs"])
        self.frames.append(now - self._last)
        self._last = now


def _entered_share(module: torch.nn.Module, entered: set[int]) -> float:
    total = {id(p): p.numel() for p in module.parameters()}
    inside = {id(p) for sub in module.modules() if id(sub) in entered for p in sub.parameters()}
    return sum(total[i] for i in inside) / max(1, sum(total.values()))


@pytest.mark.parametrize(("model_class", "name"), list(GROUPS.items()), ids=list(GROUPS.values()))
def test_compiled_regions_cover_the_model_without_breaks_or_late_recompiles(model_class, name, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    torch._dynamo.reset()
    counters.clear()
    args = [*shipped.fit_args(name, tmp_path)[1:], "--trainer.max_steps", str(STEPS), "--trainer.limit_val_batches",
            "0", "--model.init_args.compile", "true", "--model.init_args.compile_options", '{"backend": "eager"}']
    cli = build_cli(args, run=False)
    probe = _Probe()
    cli.trainer.callbacks.append(probe)
    try:
        with torch._dynamo.config.patch(fail_on_recompile_limit_hit=True):  # no silent fall-back to eager
            cli.trainer.fit(cli.model, datamodule=cli.datamodule)
        model = cli.model
        assert cli.trainer.global_step == STEPS, name
        share, entered = compiled_parameter_share(model), _entered_share(model, probe.entered)
        if os.environ.get("VITLAB_PRINT_COMPILE"):
            print(f"\n{name}: {type(model).__name__} share={share:.3f} entered={entered:.3f} "
                  f"frames/step={probe.frames} graph_breaks={sum(counters['graph_break'].values())}")
        assert not counters["graph_break"], f"{name}: graph breaks {dict(counters['graph_break'])}"
        assert share >= MIN_SHARE, f"{name}: {share:.1%} of the parameters in compiled regions"
        assert entered >= MIN_SHARE, f"{name}: regions that ran compiled hold only {entered:.1%} of the parameters"
        assert probe.frames[0] > 0, f"{name}: the first step compiled nothing"
        late = LATE_GRAPHS.get(model_class, (0, ""))[0]
        assert sum(probe.frames[2:]) <= late, f"{name}: graphs compiled per step {probe.frames}: recompiles after step 2"
    finally:
        for ckpt in tmp_path.rglob("*.ckpt"):
            ckpt.unlink()
        del cli
        gc.collect()
        torch._dynamo.reset()
