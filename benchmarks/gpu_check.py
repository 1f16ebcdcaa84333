"""One-shot GPU check: a throughput table and short bf16 fits of the GPU recipes, written as one Markdown file.

Meant to be run once, unattended, on a machine that has a GPU for a few minutes (``bash benchmarks/gpu_check.sh``):
every part runs in its own ``try`` with its own time budget, a part that fails or runs out of time writes its
error into its row and the check goes on, and the file is rewritten after every part, so whatever finished is
kept even if the whole process is stopped.

Parts, in order:

* **throughput** (:mod:`gpu_throughput`, vitlab arm): MAE ViT-B/16 (batch 512), ViT-B/16 classification
  (batch 256), CroCo-Stereo B-B (ViT-B encoder + Base decoder, 352 x 704, 8 pairs), eager, then the fits,
  then the same three compiled (regional ``torch.compile``): img/s, MFU, peak memory, dynamo graph breaks;
* **fits**: each GPU recipe of :data:`FITS` through the CLI (``vitlab fit`` in-process) with its own model,
  optimizer, callbacks and W&B logger (offline), bf16-mixed, 30 steps, the data replaced by the synthetic
  DataModule of the recipe's shapes: samples/s over the steady steps, share of that time the host waited for
  the next batch, peak memory, host syncs per step (:class:`vitlab.core.perf.StepSyncCounter` over a few
  early steps) and dynamo counters.

``--tiny`` runs the same code on a CPU with tiny models and images (2 steps, eager only): the suite's smoke
test (``tests/test_gpu_check.py``).

    bash benchmarks/gpu_check.sh                      # GPU: at most 8 minutes -> benchmarks/results/<date>-<gpu>.md
    python benchmarks/gpu_check.py --tiny --out /tmp/check   # CPU smoke run (< 1 min)
"""

from __future__ import annotations

import argparse
import contextlib
import contextvars
import datetime as dt
import gc
import math
import os
import platform
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import traceback
import warnings
import weakref
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import yaml
from lightning.pytorch import Callback

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(HERE))
if __name__ == "__main__":  # the fits name FitTimer / WindowedSyncCounter as gpu_check.<class>
    sys.modules.setdefault("gpu_check", sys.modules[__name__])

from vitlab.core.perf import StepSyncCounter, dynamo_counts  # noqa: E402

SCENES = "vitlab.core.data.SyntheticScenesDataModule"
STEREO = "vitlab.core.data.SyntheticStereoDataModule"
MULTITASK = "vitlab.mtl.data.SyntheticMultiTaskDataModule"


@dataclass
class FitSpec:
    """A GPU recipe and the synthetic data of its shapes; ``model``: ``model.init_args`` set on top of the recipe
    (weights that are not in a checkout); ``tiny_*``: what ``--tiny`` shrinks on top of that."""

    config: str  # under configs/
    unit: str
    data_class: str
    data: dict[str, Any]
    model: dict[str, Any] = field(default_factory=dict)
    tiny_data: dict[str, Any] = field(default_factory=dict)
    tiny_model: dict[str, Any] = field(default_factory=dict)


def _tiny_vit(img: int | list[int]) -> dict[str, Any]:
    return {"img_size": img, "embed_dim": 32, "depth": 2, "num_heads": 2}


_TINY_STEREO = {"img_size": [64, 128], "enc_embed_dim": 32, "enc_depth": 2, "enc_num_heads": 2, "dec_embed_dim": 32,
                "dec_depth": 2, "dec_num_heads": 2, "layer_dims": [16, 16, 32, 32], "feature_dim": 16, "last_dim": 8}
_TINY_MIT = {"embed_dims": [16, 32, 64, 128], "depths": [1, 1, 1, 1], "num_heads": [1, 2, 4, 8]}
_UDA_DATA = {"modalities": ["image", "semantic"], "size": 512, "batch_size": 2, "domain": "source",
             "target_domain": "target"}
_UDA_TINY = {"backbone": {"init_args": _TINY_MIT},
             "head_kwargs": {"embed_dim": 32, "dilations": [1, 6, 12, 18], "dropout": 0.1}}
_NO_WEIGHTS = {"backbone": {"init_args": {"pretrained": None}}}

FITS: dict[str, FitSpec] = {
    "mae_vitb": FitSpec(
        "pretrain/imagenet/mae_vitb.yaml", "img/s", SCENES, {"modalities": ["image"], "size": 224, "batch_size": 512},
        tiny_data={"size": 64, "batch_size": 2},
        tiny_model={"encoder": {"init_args": _tiny_vit(64)}, "decoder_embed_dim": 32, "decoder_depth": 1,
                    "decoder_num_heads": 2}),
    "croco_stereo": FitSpec(
        "stereo/croco_stereo.yaml", "pairs/s", STEREO, {"size": [352, 704], "batch_size": 6},
        model={"model": {"init_args": {"pretrained": None}}},
        tiny_data={"size": [64, 128], "batch_size": 1},
        tiny_model={"tile_size": [64, 128], "model": {"init_args": _TINY_STEREO}}),
    "synthetic_bb": FitSpec(
        "stereo/synthetic_bb.yaml", "pairs/s", STEREO, {"size": [256, 512], "batch_size": 16},
        tiny_data={"size": [64, 128], "batch_size": 2},
        tiny_model={"model": {"init_args": {**_TINY_STEREO, "corr_disparities": 48}}}),
    "pascal_tadformer": FitSpec(
        "mtl/pascal_tadformer.yaml", "img/s", MULTITASK, {"size": 448, "batch_size": 32},
        tiny_data={"size": 64, "batch_size": 2},
        tiny_model={"backbone": {"init_args": {"img_size": 64, "embed_dim": 32, "depths": [2, 2, 2, 2],
                                               "num_heads": [2, 4, 8, 8]}}}),
    "gta2cs_daformer": FitSpec(
        "uda/gta2cs_daformer.yaml", "src+tgt pairs/s", SCENES, _UDA_DATA, tiny_data={"size": 64},
        tiny_model=_UDA_TINY),
    "gta2cs_clda": FitSpec(
        "uda/gta2cs_clda.yaml", "src+tgt pairs/s", SCENES, _UDA_DATA, tiny_data={"size": 64},
        tiny_model={**_UDA_TINY, "student_backbone": {"init_args": {**_TINY_MIT, "embed_dims": [8, 16, 32, 64]}},
                    "student_head_kwargs": {"embed_dim": 16}, "saliency_batches": 1}),
    "ade20k_iconformer": FitSpec(
        "peft/ade20k_iconformer.yaml", "img/s", SCENES, {"modalities": ["image", "semantic"], "size": 512,
                                                         "batch_size": 16},
        model=_NO_WEIGHTS, tiny_data={"size": 64, "batch_size": 2},
        tiny_model={"backbone": {"init_args": _tiny_vit(64)},
                    "head_kwargs": {"feature_dim": 16, "layer_dims": [16, 16, 32, 32], "last_dim": 8}}),
}

THROUGHPUT = ("mae", "vit", "stereo")


# ---------------------------------------------------------------------------------------------- callbacks
def _sync() -> None:
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        torch.cuda.synchronize()


class FitTimer(Callback):
    """Wall time from the start of training batch ``warmup`` to the end of the last step (synced at both ends).

    Counts batches itself (a manual-optimization module may move ``global_step`` by more than one per batch);
    ``fetch_s`` sums the host's time between one batch's end and the next one's start (fetch, transfer,
    ``on_after_batch_transfer``): a large share means the input pipeline, not the model, sets the pace.
    """

    def __init__(self, warmup: int = 8) -> None:
        self.warmup = warmup
        self.seen = 0
        self.timed = 0
        self.t0: float | None = None
        self.t1: float | None = None
        self.fetch_s = 0.0
        self._end: float | None = None

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        if self.seen == self.warmup:
            _sync()
            self.t0 = time.perf_counter()
        elif self.t0 is not None and self._end is not None:
            self.fetch_s += time.perf_counter() - self._end

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        self.seen += 1
        if self.t0 is None:
            return
        self.timed += 1
        if trainer.max_steps > 0 and trainer.global_step >= trainer.max_steps:
            _sync()
            self.t1 = time.perf_counter()
        self._end = time.perf_counter()


class WindowedSyncCounter(StepSyncCounter):
    """:class:`~vitlab.core.perf.StepSyncCounter` on global steps ``[first_step, last_step)`` only.

    Its dispatch mode costs host time per op and makes dynamo run compiled code eagerly, so it is kept off the
    timed steps.
    """

    def __init__(self, first_step: int = 2, last_step: int = 6) -> None:
        super().__init__(first_step=first_step, capture_stack=True)
        self.last_step = last_step

    def _after_fetch(self) -> None:
        trainer = self._trainer
        if trainer is not None and trainer.global_step >= self.last_step:
            self._close()
            return
        super()._after_fetch()


# ---------------------------------------------------------------------------------------------- parts
class PartTimeout(BaseException):
    """A part ran past its budget (BaseException: library code that catches Exception must not swallow it)."""


@dataclass
class Part:
    key: str
    section: str  # "throughput" or "fit"
    budget_s: float
    run: Callable[[], dict[str, Any]]
    status: str = "not reached"
    wall_s: float = float("nan")
    result: dict[str, Any] = field(default_factory=dict)
    error: str = ""
    trace: str = ""
    notes: list[str] = field(default_factory=list)


_STOP = [False]
_MODELS: list[tuple[str, weakref.ref]] = []  # each fit's module: it must be gone once its part is over


def _on_alarm(signum, frame):
    raise PartTimeout()


def _on_sigint(signum, frame):
    _STOP[0] = True
    raise KeyboardInterrupt


@contextlib.contextmanager
def _budget(seconds: float):
    if not hasattr(signal, "setitimer"):
        yield
        return
    previous = signal.signal(signal.SIGALRM, _on_alarm)
    signal.setitimer(signal.ITIMER_REAL, max(1.0, seconds))
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def _clean(device: str) -> None:
    gc.collect()
    with contextlib.suppress(Exception):
        torch._dynamo.reset()
        from torch._dynamo.utils import counters

        counters.clear()
    if device == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()


def _peak_gib(device: str) -> float:
    return torch.cuda.max_memory_allocated() / 2**30 if device == "cuda" else float("nan")


def run_part(part: Part, device: str, deadline: float) -> None:
    left = deadline - time.monotonic()
    if left < 15:
        part.status, part.error = "skipped", f"time budget of the check spent ({left:.0f} s left)"
        return
    budget = min(part.budget_s, left)
    _clean(device)
    print(f"\n=== gpu_check: {part.section} {part.key} (budget {budget:.0f} s)", flush=True)
    t0 = time.monotonic()
    try:
        with _budget(budget):
            part.result = part.run()
        part.status = "ok"
    except KeyboardInterrupt:
        part.status, part.error = "interrupted", "stopped (SIGINT: the wrapper's time limit or Ctrl-C)"
        raise
    except PartTimeout:
        part.status, part.error = "timeout", f"ran past its budget of {budget:.0f} s"
        part.trace = traceback.format_exc(limit=-12)
    except (Exception, SystemExit) as e:  # SystemExit: the CLI's own argument errors
        if _STOP[0]:  # Lightning's answer to SIGINT: a graceful stop, then SystemExit
            part.status, part.error = "interrupted", "stopped (SIGINT: the wrapper's time limit or Ctrl-C)"
            raise KeyboardInterrupt from None
        first = (str(e).strip().splitlines() or [""])[0]
        part.status, part.error = "failed", f"{type(e).__name__}: {first}"[:300]
        part.trace = traceback.format_exc(limit=-20)
    finally:
        part.wall_s = time.monotonic() - t0
        _clean(device)
        left = torch.cuda.memory_allocated() / 2**30 if device == "cuda" else 0.0
        kept = [n for n, ref in _MODELS if ref() is not None]
        if left > 0.5 or kept:
            part.notes.append(f"after this part {left:.1f} GiB stayed allocated"
                              + (f", models of {kept} still alive" if kept else ""))
    print(f"=== gpu_check: {part.section} {part.key}: {part.status} in {part.wall_s:.1f} s {part.error}", flush=True)


def throughput_part(workload: str, mode: str, args) -> Callable[[], dict[str, Any]]:
    def run() -> dict[str, Any]:
        import gpu_throughput

        argv = ["--workloads", workload, "--modes", mode, "--arms", "vitlab", "--device", args.device,
                "--steps", str(args.tp_steps), "--warmup", str(args.tp_warmup)]
        if args.tiny:
            argv.append("--tiny")
        rows = gpu_throughput.main(argv)
        row = next(r for r in rows if r["arm"] == "vitlab")
        batch = {"mae": args.mae_batch, "vit": args.vit_batch, "stereo": args.stereo_batch}[workload]
        return {**row, "batch": batch, **dynamo_counts()}

    return run


def _merge(base: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for k, v in extra.items():
        out[k] = _merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def _overlay(spec: FitSpec, args, tmp: Path, name: str) -> Path:
    """A config file applied after the recipe: its data replaced, ``model.init_args`` values set."""
    data = {**spec.data, **(spec.tiny_data if args.tiny else {})}
    bs = int(data["batch_size"])
    data.update(train_samples=bs * args.steps, val_samples=min(bs, 8), num_workers=args.workers)
    model = _merge(spec.model, spec.tiny_model if args.tiny else {})
    if args.fit_compile:
        model["compile"] = True
    config: dict[str, Any] = {"data": {"class_path": spec.data_class, "init_args": data}}
    if model:
        config["model"] = {"init_args": model}
    path = tmp / f"{name}-overlay.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def start_wandb() -> None:
    """Start W&B's service before the first fit: its connection keeps the context it was started in, and started
    inside a fit that context holds the CLI's parser, hence that fit's trainer and model, to the end."""
    with contextlib.suppress(Exception):
        import wandb

        contextvars.Context().run(wandb.setup)


def fit_part(name: str, spec: FitSpec, args, tmp: Path) -> Callable[[], dict[str, Any]]:
    def run() -> dict[str, Any]:
        from vitlab.core.cli import build_cli

        root = tmp / name
        root.mkdir(parents=True, exist_ok=True)
        first, last = (1, 2) if args.tiny else (2, 6)
        argv = [
            "fit", "--config", str(REPO / "configs" / spec.config), "--config", str(_overlay(spec, args, tmp, name)),
            "--trainer.precision", args.precision, "--trainer.max_steps", str(args.steps),
            "--trainer.max_epochs", "-1", "--trainer.val_check_interval", str(args.steps),
            "--trainer.check_val_every_n_epoch", "null", "--trainer.limit_val_batches", "1",
            "--trainer.num_sanity_val_steps", "0", "--trainer.accumulate_grad_batches", "1",
            "--trainer.accelerator", "gpu" if args.device == "cuda" else "cpu", "--trainer.devices", "1",
            "--trainer.num_nodes", "1", "--trainer.strategy", "auto", "--trainer.default_root_dir", str(root / "runs"),
            "--trainer.callbacks+=gpu_check.FitTimer", f"--trainer.callbacks.warmup={args.fit_warmup}",
            "--trainer.callbacks+=gpu_check.WindowedSyncCounter", f"--trainer.callbacks.first_step={first}",
            f"--trainer.callbacks.last_step={last}",
        ]
        warnings.filterwarnings("ignore", message=r".*LightningCLI's args parameter is intended.*")
        cwd = Path.cwd()
        os.chdir(root)  # nothing a recipe writes lands in the checkout
        try:
            # in a context of its own: jsonargparse leaves its parser (and so the CLI, trainer and model) in a
            # context variable, which would keep this fit's model in GPU memory through the next parts
            trainer = contextvars.copy_context().run(build_cli, argv).trainer
        finally:
            os.chdir(cwd)
        _MODELS.append((name, weakref.ref(trainer.lightning_module)))
        try:
            timer = next(cb for cb in trainer.callbacks if type(cb).__name__ == "FitTimer")
            syncs = next(cb for cb in trainer.callbacks if type(cb).__name__ == "WindowedSyncCounter")
            bs = int(trainer.datamodule.batch_size)
            summary = syncs.summary()
            steady = syncs.steady()
            counted = [sum(_stalls(e, args.device) for e in c.events) for c in steady.values()]
            kinds: dict[str, int] = {}  # "read cpu": an .item() of a CPU tensor (optimizer step counts): no GPU wait
            for c in steady.values():
                for e in c.events:
                    key = f"{e.kind} {e.device.split(':')[0]}"
                    kinds[key] = kinds.get(key, 0) + 1
            worst = max(steady.values(), key=lambda c: c.count, default=None)
            where = _where(worst.events[0]) if worst is not None and worst.count else ""
            if timer.t0 is None or timer.t1 is None:
                raise RuntimeError(f"the fit stopped after {timer.seen} batches (global step {trainer.global_step}), "
                                   f"before the timed steps ended")
            dt_s = timer.t1 - timer.t0
            return {"batch": bs, "unit": spec.unit, "timed": timer.timed, "rate": timer.timed * bs / dt_s,
                    "fetch": timer.fetch_s / dt_s, "peak_gb": _peak_gib(args.device),
                    "syncs_mean": sum(counted) / len(counted) if counted else float("nan"),
                    "syncs_max": max(counted, default=0), "syncs_all_max": summary["steady_max"],
                    "sync_steps": len(counted),
                    "sync_kinds": {k: v for k, v in kinds.items() if v}, "sync_where": where,
                    "model": type(trainer.lightning_module).__name__, **dynamo_counts()}
        finally:
            del trainer
            shutil.rmtree(root, ignore_errors=True)  # checkpoints of ViT-L-sized models

    return run


def _stalls(event, device: str) -> bool:
    """Whether a counted event makes the host wait for the GPU (on a CPU run: every event, as the suite counts).

    On a GPU run a read of a CPU tensor (an optimizer's step count, a Python-made index) does not wait.
    """
    return device == "cpu" or not event.device.startswith("cpu") or event.kind == "h2d"


def _short_path(frame: str) -> str:
    frame = frame.replace(str(REPO) + os.sep, "")
    return re.sub(r"^.*?site-packages/", "", frame)


def _where(event) -> str:
    """The op, the innermost frame outside torch's plumbing, and the innermost frame of vitlab's own code."""
    frames = [f for f in event.stack if not re.search(r"/torch/(_|utils/|nn/modules/module\.py)", f)]
    inner = _short_path((frames or event.stack or ["?"])[-1])
    own = _short_path(event.where(1)) if event.stack else "?"
    return f"{event.op} ({event.kind}, {event.device}) at {inner}" + ("" if own == inner else f"; own code: {own}")


# ---------------------------------------------------------------------------------------------- report
def _fmt(v: Any, spec: str = ".1f", none: str = "n/a") -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return none
    return format(v, spec)


def _git_commit() -> str:
    try:
        sha = subprocess.run(["git", "rev-parse", "HEAD"], cwd=REPO, capture_output=True, text=True,
                             timeout=10).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=REPO,
                               capture_output=True, text=True, timeout=10).stdout.strip()
        return (sha or "unknown") + (" (with uncommitted changes)" if dirty else "")
    except Exception as e:  # no git in the image: say so
        return f"unknown ({type(e).__name__})"


def device_info(device: str) -> dict[str, str]:
    info = {"torch": torch.__version__, "python": platform.python_version(), "cpus": str(os.cpu_count())}
    with contextlib.suppress(Exception):
        import lightning

        info["lightning"] = lightning.__version__
    if device == "cuda":
        props = torch.cuda.get_device_properties(0)
        info.update(name=torch.cuda.get_device_name(0), memory=f"{props.total_memory / 2**30:.0f} GiB",
                    cuda=str(torch.version.cuda), cudnn=str(torch.backends.cudnn.version()),
                    capability=f"{props.major}.{props.minor}")
        with contextlib.suppress(Exception):
            info["driver"] = subprocess.run(["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"],
                                            capture_output=True, text=True, timeout=10).stdout.strip() or "n/a"
    else:
        info.update(name=f"CPU ({platform.processor() or platform.machine()}, {torch.get_num_threads()} threads)",
                    cuda=str(torch.version.cuda))
    return info


def slug(name: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-") or "device"


def render(parts: list[Part], args, info: dict[str, str], started: str, elapsed: float) -> str:
    tp = [p for p in parts if p.section == "throughput"]
    fits = [p for p in parts if p.section == "fit"]
    lines = [
        f"# GPU check: {info['name']}",
        "",
        f"* date: {started} UTC; total wall time {elapsed:.0f} s (budget {args.budget:.0f} s)"
        f"{'; `--tiny` (CPU smoke run: tiny models, numbers mean nothing)' if args.tiny else ''}",
        f"* device: {info['name']}" + (f", {info['memory']}, compute capability {info['capability']}, driver "
                                      f"{info.get('driver', 'n/a')}" if "memory" in info else ""),
        f"* torch {info['torch']}, CUDA {info['cuda']}" + (f", cuDNN {info['cudnn']}" if "cudnn" in info else "")
        + f", Lightning {info.get('lightning', '?')}, Python {info['python']}, {info['cpus']} CPU cores",
        f"* commit: {_git_commit()}",
        f"* command: `python benchmarks/gpu_check.py {' '.join(args.argv)}`".rstrip(),
        *(f"* note: {n}" for n in getattr(args, "notes", [])),
        *(f"* note: {p.section} {p.key}: {n}" for p in parts for n in p.notes),
        f"* wall time: throughput {sum(p.wall_s for p in tp if not math.isnan(p.wall_s)):.0f} s, "
        f"fits {sum(p.wall_s for p in fits if not math.isnan(p.wall_s)):.0f} s",
        "",
        f"## Throughput ({args.precision}, vitlab arm of `benchmarks/gpu_throughput.py`: Trainer.fit on batches "
        f"already on the device; {args.tp_steps} timed steps after {args.tp_warmup})",
        "",
        "| workload | mode | batch | throughput | MFU | peak mem (GiB) | GFLOP/item | dynamo frames / graph breaks "
        "| wall (s) | status |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for p in tp:
        r = p.result
        name = r.get("name", p.key.split(":")[0])
        rate = f"{r['rate']:.1f} {r['unit']}" if "rate" in r else ""
        mfu = _fmt(100 * r["mfu"], ".1f") + " %" if r.get("mfu") is not None and not math.isnan(r["mfu"]) else "n/a"
        dyn = f"{r['frames']} / {r['graph_breaks']}" if "frames" in r else ""
        lines.append(f"| {name} | {p.key.split(':')[1]} | {r.get('batch', '')} | {rate} | {mfu if r else ''} | "
                     f"{_fmt(r.get('peak_gb')) if r else ''} | {_fmt(r.get('gflops_per_item'), '.4g') if r else ''} | "
                     f"{dyn} | {_fmt(p.wall_s, '.0f', '')} | {_status(p)} |")
    lines += [
        "",
        f"## Recipe fits ({args.precision}, {args.steps} steps, synthetic data of the recipe's shapes, "
        f"{args.workers} loader workers, compile {'on' if args.fit_compile else 'as the recipe ships it'}; "
        f"throughput over batches {args.fit_warmup + 1}-{args.steps})",
        "",
        "| recipe | module | batch | throughput | host wait for data | peak mem (GiB) | host syncs / step "
        "(mean, max; events by kind) | dynamo frames / graph breaks | wall (s) | status |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for p in fits:
        r = p.result
        rate = f"{r['rate']:.1f} {r['unit']}" if "rate" in r else ""
        syncs = ""
        if "syncs_max" in r:
            syncs = f"{_fmt(r['syncs_mean'], '.1f')}, {r['syncs_max']} ({r['sync_steps']} steps)"
            if r.get("sync_kinds"):
                syncs += "; " + ", ".join(f"{k} {v}" for k, v in sorted(r["sync_kinds"].items()))
        dyn = f"{r['frames']} / {r['graph_breaks']}" if "frames" in r else ""
        fetch = _fmt(100 * r["fetch"], ".0f") + " %" if "fetch" in r else ""
        lines.append(f"| `{FITS[p.key].config}` | {r.get('model', '')} | {r.get('batch', '')} | {rate} | {fetch} | "
                     f"{_fmt(r.get('peak_gb')) if r else ''} | {syncs} | {dyn} | {_fmt(p.wall_s, '.0f', '')} | "
                     f"{_status(p)} |")
    wheres = [(p.key, p.result["sync_where"]) for p in fits if p.result.get("sync_where")]
    if wheres:
        lines += ["", "First host sync of the worst counted step:", ""]
        lines += [f"* {k}: `{w}`" for k, w in wheres]
    bad = [p for p in parts if p.trace]
    if bad:
        lines += ["", "## Failures", ""]
        for p in bad:
            lines += [f"### {p.section} {p.key}: {p.error}", "", "```", p.trace.rstrip()[-4000:], "```", ""]
    lines += ["", "Host syncs: `vitlab.core.perf.StepSyncCounter` on a few early steps (not the timed ones: its "
              "dispatch mode slows the host and keeps compiled code eager); on a GPU the mean and max count only "
              "what waits for the device (events on CUDA tensors, blocking host-to-device copies), the events "
              "by kind list everything seen in those steps. Host wait for data: share of the timed wall time "
              "between one step's end and the next one's start.", ""]
    return "\n".join(lines)


def _status(p: Part) -> str:
    return p.status if not p.error else f"{p.status}: {p.error.replace('|', '/')}"


# ---------------------------------------------------------------------------------------------- main
def parse(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--tiny", action="store_true", help="tiny models on a CPU, eager only (the suite's smoke test)")
    ap.add_argument("--out", default=str(HERE / "results"), help="folder of the results file")
    ap.add_argument("--device", default=None, help="cuda or cpu (default: cuda when available; --tiny: cpu)")
    ap.add_argument("--budget", type=float, default=None, help="seconds for the whole check (450; tiny 120)")
    ap.add_argument("--steps", type=int, default=None, help="fit steps (30; tiny 2)")
    ap.add_argument("--only", default=None, help="comma-separated subset of part keys (mae, vit, stereo, fit names)")
    ap.add_argument("--fit-compile", action="store_true", help="fits with --model.init_args.compile true")
    ap.add_argument("--workers", type=int, default=None, help="loader workers of the fits (cores - 2, at most 14)")
    given = list(sys.argv[1:] if argv is None else argv)
    args = ap.parse_args(given)
    args.argv = given
    tiny = args.tiny
    args.device = args.device or ("cpu" if tiny or not torch.cuda.is_available() else "cuda")
    args.budget = args.budget or (120.0 if tiny else 450.0)
    args.steps = args.steps or (2 if tiny else 30)
    args.fit_warmup = 1 if tiny else 8
    args.tp_steps, args.tp_warmup = (1, 1) if tiny else (20, 5)
    args.mae_batch, args.vit_batch, args.stereo_batch = (4, 4, 2) if tiny else (512, 256, 8)
    args.precision = "32-true" if args.device == "cpu" else "bf16-mixed"
    if args.workers is None:
        args.workers = 0 if tiny else max(2, min(14, (os.cpu_count() or 4) - 2))
    args.only = set(args.only.split(",")) if args.only else None
    return args


def build_parts(args, tmp: Path) -> list[Part]:
    compiled_budget, eager_budget, fit_budget = (20, 20, 30) if args.tiny else (110, 45, 60)
    tp = {mode: [Part(f"{w}:{mode}", "throughput", eager_budget if mode == "eager" else compiled_budget,
                      throughput_part(w, mode, args)) for w in THROUGHPUT] for mode in ("eager", "compiled")}
    fits = [Part(name, "fit", fit_budget * (1.5 if name in ("croco_stereo", "gta2cs_clda") else 1.0),
                 fit_part(name, spec, args, tmp)) for name, spec in FITS.items()]
    parts = tp["eager"] + fits + tp["compiled"]
    for p in parts:
        if args.tiny and p.key.endswith(":compiled"):
            p.status, p.error = "skipped", "--tiny runs eager only"
        elif args.only is not None and p.key.split(":")[0] not in args.only:
            p.status, p.error = "skipped", "not in --only"
    return parts


def main(argv: list[str] | None = None) -> tuple[Path, list[Part]]:
    args = parse(argv)
    t_start = time.monotonic()
    deadline = t_start + args.budget
    started = dt.datetime.now(dt.timezone.utc)
    for key, value in (("WANDB_MODE", "offline"), ("WANDB_CONSOLE", "off"), ("WANDB_DISABLE_GIT", "true"),
                       ("WANDB_DISABLE_CODE", "true"), ("WANDB_SILENT", "true")):
        os.environ.setdefault(key, value)
    os.environ.pop("VITLAB_RUN_DIR", None)
    signal.signal(signal.SIGINT, _on_sigint)
    start_wandb()
    if args.device == "cuda":
        torch.cuda.init()
    args.notes = []
    with contextlib.suppress(OSError):
        shm = shutil.disk_usage("/dev/shm").free / 2**30
        if args.workers and shm < 2:  # worker batches travel through shared memory: a small /dev/shm kills them
            args.notes.append(f"/dev/shm has {shm:.1f} GiB free: fits load in the main process (0 workers)")
            args.workers = 0
    info = device_info(args.device)
    out_dir = Path(args.out).resolve()
    out_dir.mkdir(parents=True, exist_ok=True)
    out = out_dir / f"{started:%Y-%m-%d}-{slug(info['name'] if args.device == 'cuda' else 'cpu-tiny' if args.tiny else 'cpu')}.md"
    tmp = Path(tempfile.mkdtemp(prefix="gpu_check-"))
    parts = build_parts(args, tmp)

    def write() -> None:
        out.write_text(render(parts, args, info, f"{started:%Y-%m-%d %H:%M}", time.monotonic() - t_start))

    write()
    try:
        for part in parts:
            if part.status != "not reached":
                continue
            run_part(part, args.device, deadline)
            write()
            os.environ.pop("VITLAB_RUN_DIR", None)
    except KeyboardInterrupt:
        pass
    finally:
        write()
        shutil.rmtree(tmp, ignore_errors=True)
    print("\n" + out.read_text(), flush=True)
    print(f"gpu_check: wrote {out}", flush=True)
    return out, parts


if __name__ == "__main__":
    _, done = main()
    sys.exit(0 if all(p.status in ("ok", "skipped") for p in done) else 1)
