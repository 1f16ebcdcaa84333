"""The CPU benchmarks run end to end at tiny sizes: ``cpu_step_ratio.py`` (shipped config through the CLI vs a plain
loop) and ``input_pipeline.py`` (decoding in the workers vs on the device)."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parents[1] / "benchmarks"


def _load(name: str):
    spec = importlib.util.spec_from_file_location(name, BENCH / f"{name}.py")
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod
    spec.loader.exec_module(mod)
    return mod


def test_cpu_step_ratio_times_both_arms(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    bench = _load("cpu_step_ratio")
    row = bench.measure("dacs", steps=2, warmup=1, out=tmp_path)
    assert row["steps"] == 2 and row["vitlab_ms"] > 0 and row["plain_ms"] > 0 and 0.2 < row["median_ratio"] < 5


def test_input_pipeline_reports_both_decodes(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert _load("input_pipeline").main(["--images", "8", "--batch", "4", "--workers", "0", "--size", "32"]) == 0
    out = capsys.readouterr().out
    assert "| `workers` |" in out and "| `device` |" in out
