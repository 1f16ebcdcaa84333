"""Every shipped config trains as shipped.

For each YAML under ``configs/<pkg>/`` this runs ``vitlab fit --config <it>`` in-process with the config's
own logger (W&B, offline), callbacks and checkpointing, overriding only step counts, device/process
counts, output folders and dataset sizes:

* common to all: 2 optimizer steps, 1 validation batch (no sanity pass), accumulation 1, one CPU process, the run root in a
  temporary folder, no loader workers;
* SyntheticScenes data: two training batches of at most 4 samples, one validation batch;
* everything else listed for that file in ``tests/shipped/<pkg>.yaml``::

      quickstart.yaml: []                                   # extra CLI args
      recipe.yaml:                                          # or a mapping:
        args: ["--data.init_args.batch_size", "2"]          #   extra CLI args
        roots: {data/nyu: tests/data/nyu}                   #   data roots replaced in the config's text
        replace: {"size: F": "size: H"}                     #   other text (fixture resolutions) replaced
        base: quickstart.yaml                               #   an overlay applied on top of this config
        xfail: "why it cannot fit yet"                      #   a known/unverified failure, reported as xfail

A config without an entry fails :func:`test_every_config_has_an_entry`, so no config ships untested.
Real-data recipes point at the tiny real-format fixtures under ``tests/data/``. The shared bases under
``configs/_base/`` are not recipes: each recipe is read with the bases it names (``_base_``).

Each fit also checks the run defaults the CLI supplies whatever a config lists: every checkpoint callback
is vitlab's and its ``last.ckpt`` holds the final step, and the injected callbacks are there exactly once.
The run's checkpoints are deleted after the checks (ViT-B-width models would fill the temporary folder).

The same fit counts host syncs with core's :class:`~vitlab.core.perf.StepSyncCounter` (added with
``--trainer.callbacks+=``, the way a user adds it): step 1 — the step after the one that builds lazy optimizer
state and first-call caches — must make none of any kind (reads, implicit syncs, blocking host-to-device copies,
tensors made from Python data). Every shipped config logs every 10 or more steps and checkpoints by step every
4000 or more, so in a 2-step fit step 1 is steady and no log or checkpoint step is counted: the logging sync
(reading the logged values once every ``log_every_n_steps``) is by design and not part of this check. A sync
that may not be fixed yet goes in :data:`ALLOWED_SYNCS`, with its reason.
"""

from __future__ import annotations

import gc
import inspect
import os
import sys
import traceback
from collections import Counter
from pathlib import Path

import pytest
import torch
import yaml

from vitlab.core.callbacks import ModelCheckpoint, NonFiniteGuard, PlainProgressBar
from vitlab.core.cli import VitlabSaveConfigCallback, _import_class, build_cli, load_plugins
from vitlab.core.config_bases import BASE_KEY, config_chain, strip_base
from vitlab.core.ddp import RankGuard
from vitlab.core.perf import StepSyncCounter
from vitlab.core.preemption import PreemptionCheckpoint

REPO = Path(__file__).resolve().parents[1]
CONFIGS = REPO / "configs"
REGISTRY = REPO / "tests" / "shipped"


def _registry() -> dict[str, dict]:
    entries = {}
    for reg in sorted(REGISTRY.glob("*.yaml")):
        for name, spec in (yaml.safe_load(reg.read_text()) or {}).items():
            spec = {"args": spec} if isinstance(spec, list) or spec is None else dict(spec)
            entries[f"{reg.stem}/{name}"] = spec
    return entries


def _configs() -> list[str]:
    return sorted(str(p.relative_to(CONFIGS)) for p in CONFIGS.rglob("*.yaml") if "_base" not in p.parts)


ENTRIES = _registry()

#: Host syncs tolerated in a steady training step, as (file suffix, source text, why): empty, keep it so.
ALLOWED_SYNCS: list[tuple[str, str, str]] = []


def test_every_config_has_an_entry():
    missing = [c for c in _configs() if c not in ENTRIES]
    stale = [c for c in ENTRIES if not (CONFIGS / c).is_file()]
    assert not missing, f"shipped configs without an entry in tests/shipped/<pkg>.yaml: {missing}"
    assert not stale, f"entries in tests/shipped/ for configs that do not exist: {stale}"


def _data_spec(paths: list[Path]) -> tuple[type | None, dict]:
    cls, init = None, {}
    for p in [chained for path in paths for chained in config_chain(path)]:  # each file with its bases first
        data = (yaml.safe_load(p.read_text()) or {}).get("data") or {}
        if data.get("class_path"):
            cls = data["class_path"]
        init.update(data.get("init_args") or {})
    load_plugins()
    return (_import_class(cls) if cls and "." in cls else _short(cls)), init


def _short(name: str | None) -> type | None:
    if not name:
        return None
    import vitlab.core.data as core_data

    return getattr(core_data, name, None)


def _materialise(config: Path, spec: dict, tmp: Path) -> Path:
    roots, replace = spec.get("roots") or {}, spec.get("replace") or {}
    if not roots and not replace:
        return config
    text = config.read_text()
    for old, new in [*((o, str(REPO / n)) for o, n in roots.items()), *replace.items()]:
        if old not in text:
            raise AssertionError(f"{config}: {old!r} listed in tests/shipped but not in the config")
        text = text.replace(old, new)
    bases = (yaml.safe_load(text) or {}).get(BASE_KEY)
    if bases:  # the copy lives elsewhere: name the same base files by absolute path
        bases = [bases] if isinstance(bases, str) else bases
        text = f"{BASE_KEY}: {[str((config.parent / b).resolve()) for b in bases]}\n" + strip_base(text, config)
    out = tmp / config.name
    out.write_text(text)
    return out


def fit_args(name: str, tmp_path: Path) -> list[str]:
    spec = ENTRIES[name]
    config = CONFIGS / name
    files = []
    if spec.get("base"):
        base = CONFIGS / Path(name).parts[0] / spec["base"]
        (tmp_path / "base").mkdir(exist_ok=True)
        files.append(_materialise(base, spec, tmp_path / "base"))
    files.append(_materialise(config, spec, tmp_path))
    cls, init = _data_spec(files)
    args = ["fit"]
    for f in files:
        args += ["--config", str(f)]
    args += [
        "--trainer.max_steps", "2", "--trainer.limit_val_batches", "1", "--trainer.num_sanity_val_steps", "0", "--trainer.accumulate_grad_batches", "1",
        "--trainer.accelerator", "cpu", "--trainer.devices", "1", "--trainer.num_nodes", "1",
        "--trainer.strategy", "auto", "--trainer.default_root_dir", str(tmp_path / "runs"),
    ]
    args += tiny_data_args(cls, init)
    extra = [str(a) for a in spec.get("args") or []]
    return args + [str(REPO / a) if a.startswith("tests/data/") else a for a in extra]  # the test runs elsewhere


def tiny_data_args(cls: type | None, init: dict) -> list[str]:
    """No loader workers; synthetic DataModules: two training batches of at most 4 samples, one validation batch."""
    params = inspect.signature(cls).parameters if cls is not None else {}
    args = ["--data.init_args.num_workers", "0"] if "num_workers" in params else []
    if cls is not None and "Synthetic" in cls.__name__:
        bs = min(4, int(init.get("batch_size", params["batch_size"].default if "batch_size" in params else 4)))
        args += ["--data.init_args.batch_size", str(bs),
                 "--data.init_args.train_samples", str(2 * bs), "--data.init_args.val_samples", str(bs)]
    return args


def _cases():
    for name in sorted(ENTRIES):
        reason = ENTRIES[name].get("xfail")
        yield pytest.param(name, marks=pytest.mark.xfail(reason=reason, strict=False)) if reason else name


@pytest.mark.parametrize("name", list(_cases()))
def test_config_fits_as_shipped(name, tmp_path, monkeypatch):
    monkeypatch.setenv("WANDB_MODE", "offline")
    for key in ("WANDB_DISABLE_GIT", "WANDB_DISABLE_CODE", "WANDB__DISABLE_STATS", "WANDB__DISABLE_META"):
        monkeypatch.setenv(key, "true")  # W&B's machine/git probes: the logger itself stays as shipped
    monkeypatch.setenv("WANDB_CONSOLE", "off")
    monkeypatch.delenv("VITLAB_RUN_DIR", raising=False)
    monkeypatch.chdir(tmp_path)  # nothing may land in the working directory either
    trainer, error = _fit([*fit_args(name, tmp_path), f"--trainer.callbacks+={StepSyncCounter.__module__}.StepSyncCounter"])
    if error:  # raised here, outside the except block, so the failed run's frames (and model) are freed
        pytest.fail(f"{name}: the fit raised\n{error}", pytrace=False)
    try:
        _check_run(name, trainer, tmp_path)
        _check_syncs(name, trainer)
    finally:
        for ckpt in tmp_path.rglob("*.ckpt"):  # big for ViT-B widths: keep the suite's temp files small
            ckpt.unlink()
        os.environ.pop("VITLAB_RUN_DIR", None)
        del trainer
        gc.collect()  # sixty fits run in one process: each model must be gone before the next one is built


def _injected(trainer) -> dict[type, int]:
    """How many of each callback the CLI adds to every fit the trainer holds."""
    bar = PlainProgressBar if trainer.progress_bar_callback is not None and not sys.stdout.isatty() else None
    kinds = [NonFiniteGuard, PreemptionCheckpoint, RankGuard, VitlabSaveConfigCallback, *([bar] if bar else [])]
    return {k: sum(isinstance(cb, k) for cb in trainer.callbacks) for k in kinds}


def _check_run(name: str, trainer, tmp_path: Path) -> None:
    assert trainer.global_step == 2, f"{name}: stopped at step {trainer.global_step}"
    counts = _injected(trainer)
    assert set(counts.values()) == {1}, f"{name}: injected callbacks (each once): {counts}"
    ckpt_cbs = trainer.checkpoint_callbacks
    assert ckpt_cbs and all(type(cb) is ModelCheckpoint or isinstance(cb, ModelCheckpoint) for cb in ckpt_cbs), \
        f"{name}: checkpoint callbacks {[type(cb).__qualname__ for cb in ckpt_cbs]} are not all vitlab's"
    for cb in ckpt_cbs:
        if cb.save_last:
            last = Path(cb.last_model_path)
            step = torch.load(last, map_location="cpu", mmap=True, weights_only=True)["global_step"]
            assert step == trainer.global_step, f"{name}: {last.name} holds step {step}, fit ended at {trainer.global_step}"
    assert any(cb.save_last for cb in ckpt_cbs), f"{name}: no checkpoint callback keeps last.ckpt"
    run = Path(trainer.default_root_dir)
    assert run.parent == tmp_path / "runs" and run.name == "version_0", run
    assert (run / "config.yaml").is_file(), f"{name}: no config.yaml in the run folder {run}"
    ckpts = list(run.glob("checkpoints/*.ckpt"))
    assert ckpts, f"{name}: no checkpoint written under {run}/checkpoints"
    logged = {k: v for k, v in trainer.callback_metrics.items() if isinstance(v, torch.Tensor)}
    assert all(torch.isfinite(v).all() for v in logged.values()), f"{name}: non-finite metrics {logged}"
    if any(type(lg).__name__ == "WandbLogger" for lg in trainer.loggers):
        assert list(run.glob("wandb/offline-run-*")), f"{name}: no offline W&B run under {run}"
    stray = [p.name for p in tmp_path.iterdir() if p.name not in {"runs", "base"} and p.suffix != ".yaml"]
    assert not stray, f"{name}: wrote outside the run folder: {stray}"


def _allowed(event) -> bool:
    return any(any(f in frame and text in frame for frame in event.stack) for f, text, _ in ALLOWED_SYNCS)


def _check_syncs(name: str, trainer) -> None:
    """No host sync in a steady step; the message names where each one was asked for (file:line)."""
    counters = [cb for cb in trainer.callbacks if isinstance(cb, StepSyncCounter)]
    assert len(counters) == 1, f"{name}: {len(counters)} StepSyncCounter callbacks"
    steady = counters[0].steady()
    assert steady, f"{name}: no steady step counted ({counters[0].summary()})"
    bad: Counter = Counter()
    for step, c in steady.items():
        for e in c.events:
            if not _allowed(e):  # where(): the project's frames; the innermost one names the op inside a library
                bad[step, e.kind, e.op, e.where(), e.stack[-1] if e.stack else "?"] += 1
    assert not bad, f"{name}: host syncs in steady training steps:\n" + "\n".join(
        f"step {step}: {n}x [{kind} {op}] {where}\n    innermost: {inner}"
        for (step, kind, op, where, inner), n in bad.most_common())


def _fit(args: list[str]):
    """Fit and return ``(trainer, None)``, or ``(None, formatted traceback)`` — never a live exception."""
    try:
        return build_cli(args).trainer, None
    except (Exception, SystemExit):  # SystemExit: the CLI's own argument errors
        return None, traceback.format_exc()
