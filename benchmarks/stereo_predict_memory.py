"""Seconds and peak memory of stereo prediction per frame size: full frame against the ``max_tokens`` budget.

    python benchmarks/stereo_predict_memory.py [--config configs/stereo/quickstart.yaml] [--mp 0.25 1 4 12]
        [--threads 2] [--timeout 600] [--out table.md]

Each (size, mode) runs in a fresh process (peak RSS is per process) on a random 4:3 pair through
:func:`vitlab.stereo.predict_disparity`, with the config's model (random weights: memory and time do not depend
on them). Modes: ``full`` = one full-frame forward (``tiled=False``), ``budget`` = what ``vitlab predict`` does by
default (full frame within ``max_tokens``, else budget windows; the plan is printed). Columns: megapixels, the
plan, wall seconds of the prediction, seconds per megapixel, peak RSS of the process and the RSS it had before
the prediction (model built, inputs made). A run past ``--timeout`` or ``--mem-limit-gib`` is reported as such.
"""

from __future__ import annotations

import argparse
import importlib
import json
import math
import resource
import subprocess
import sys
import time
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]


def _build(spec):
    """Instantiate a ``class_path`` / ``init_args`` tree (the model section of a config)."""
    if isinstance(spec, dict) and "class_path" in spec:
        module, _, name = spec["class_path"].rpartition(".")
        cls = getattr(importlib.import_module(module), name)
        return cls(**{k: _build(v) for k, v in (spec.get("init_args") or {}).items()})
    if isinstance(spec, list):
        return [_build(v) for v in spec]
    return spec


def _rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # Linux: KiB


def _current_rss_mib() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024.0
    return float("nan")


def one(config: Path, mp: float, mode: str, threads: int) -> dict:
    import torch

    from vitlab.stereo import predict_disparity

    torch.set_num_threads(threads)
    model = _build(yaml.safe_load(config.read_text())["model"]).eval()
    h = int(round(math.sqrt(mp * 1e6 * 3 / 4)))
    w = int(round(h * 4 / 3))
    g = torch.Generator().manual_seed(0)
    left = torch.randint(0, 256, (3, h, w), dtype=torch.uint8, generator=g)
    right = torch.roll(left, shifts=-8, dims=-1)
    plan = model.inference_plan((1, 3, h, w), tiled=False if mode == "full" else None)
    before = _current_rss_mib()
    t0 = time.perf_counter()
    disp = predict_disparity(model, left, right, tiled=False if mode == "full" else None)
    seconds = time.perf_counter() - t0
    assert disp.shape[-2:] == (h, w)
    how = plan.mode if plan.window is None else f"{plan.mode} {plan.window[0]}x{plan.window[1]}"
    return {"mp": h * w / 1e6, "size": f"{w}x{h}", "mode": mode, "plan": how, "tokens": plan.tokens,
            "seconds": seconds, "peak_rss_mib": _rss_mib(), "rss_before_mib": before}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--config", type=Path, default=REPO / "configs" / "stereo" / "quickstart.yaml")
    ap.add_argument("--mp", type=float, nargs="+", default=[0.25, 1.0, 4.0, 12.0])
    ap.add_argument("--modes", nargs="+", default=["budget", "full"], choices=["budget", "full"])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--timeout", type=float, default=600.0, help="seconds per run")
    ap.add_argument("--mem-limit-gib", type=float, default=16.0,
                    help="address-space limit of each run (a run past it fails instead of swapping the machine)")
    ap.add_argument("--out", type=Path, default=None, help="also write the table here (Markdown)")
    ap.add_argument("--one", nargs=2, metavar=("MP", "MODE"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.one:
        print(json.dumps(one(args.config, float(args.one[0]), args.one[1], args.threads)))
        return
    rows = []
    for mp in args.mp:
        for mode in args.modes:
            cmd = [sys.executable, __file__, "--config", str(args.config), "--threads", str(args.threads),
                   "--one", str(mp), mode]
            limit = int(args.mem_limit_gib * 2**30)

            def cap(limit=limit):
                resource.setrlimit(resource.RLIMIT_AS, (limit, limit))

            try:
                done = subprocess.run(cmd, capture_output=True, text=True, timeout=args.timeout, preexec_fn=cap)
                lines = [ln for ln in done.stdout.splitlines() if ln.startswith("{")]
                row = json.loads(lines[-1]) if done.returncode == 0 and lines else \
                    {"mp": mp, "mode": mode, "error": (done.stderr.strip().splitlines() or ["failed"])[-1]}
            except subprocess.TimeoutExpired:
                row = {"mp": mp, "mode": mode, "error": f"did not finish in {args.timeout:.0f} s"}
            rows.append(row)
            print(json.dumps(row), flush=True)
    head = "| MP | size | mode | plan | s | s/MP | peak RSS MiB | RSS before MiB |\n|---|---|---|---|---|---|---|---|"
    body = []
    for r in rows:
        if "error" in r:
            body.append(f"| {r['mp']:g} | | {r['mode']} | {r['error']} | | | | |")
        else:
            body.append(f"| {r['mp']:.2f} | {r['size']} | {r['mode']} | {r['plan']} | {r['seconds']:.1f} | "
                        f"{r['seconds'] / r['mp']:.1f} | {r['peak_rss_mib']:.0f} | {r['rss_before_mib']:.0f} |")
    table = "\n".join([head, *body])
    print(table)
    if args.out:
        args.out.write_text(table + "\n")


if __name__ == "__main__":
    main()
