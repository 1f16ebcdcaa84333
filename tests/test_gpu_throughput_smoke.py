"""``benchmarks/gpu_throughput.py --tiny`` runs end to end on a CPU: both arms of every workload train and the
table carries finite throughputs, ratios and FLOP counts."""

from __future__ import annotations

import importlib.util
import math
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[1] / "benchmarks" / "gpu_throughput.py"


def _load():
    spec = importlib.util.spec_from_file_location("gpu_throughput", BENCH)
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod  # dataclasses look their module up there
    spec.loader.exec_module(mod)
    return mod


@pytest.mark.slow
def test_tiny_benchmark_runs_on_cpu(capsys):
    bench = _load()
    rows = bench.main(["--tiny", "--device", "cpu", "--steps", "1", "--warmup", "1"])
    assert {(r["workload"], r["arm"]) for r in rows} == {(w, a) for w in ("mae", "vit", "stereo")
                                                        for a in ("plain", "vitlab")}
    for r in rows:
        assert r["rate"] > 0 and math.isfinite(r["ratio"]) and r["gflops_per_item"] > 0
        assert r["mode"] == "eager"
    out = capsys.readouterr().out
    assert "| workload | mode | arm | throughput |" in out and out.count("img/s") >= 4 and "pairs/s" in out


def test_arguments_and_sizes():
    bench = _load()
    full = bench.parse(["--device", "cpu"])
    assert (full.mae_batch, full.vit_batch, full.modes) == (512, 256, ["eager", "compiled"])
    quick = bench.parse(["--quick", "--device", "cpu"])
    assert quick.modes == ["eager"] and quick.steps == 10
    with pytest.raises(SystemExit):
        bench.parse(["--workloads", "mae,detr"])
    assert bench.peak_flops(bench.torch.device("cpu"), None) is None
    assert bench.peak_flops(bench.torch.device("cpu"), 100.0) == 100e12
