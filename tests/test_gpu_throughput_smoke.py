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


def test_peak_follows_the_gpu_model_and_the_precision(monkeypatch):
    bench = _load()
    cuda = bench.torch.device("cuda")
    monkeypatch.setattr(bench.torch.cuda, "get_device_name", lambda d=None: "NVIDIA H100 NVL")
    assert bench.peak_flops(cuda, None, "bf16-mixed") == 835e12
    monkeypatch.setattr(bench.torch.cuda, "get_device_name", lambda d=None: "NVIDIA H100 80GB HBM3")
    assert bench.peak_flops(cuda, None, "bf16-mixed") == 989e12
    monkeypatch.setattr(bench.torch, "get_float32_matmul_precision", lambda: "high")
    assert bench.peak_flops(cuda, None, "32-true") == 494e12  # TF32
    monkeypatch.setattr(bench.torch, "get_float32_matmul_precision", lambda: "highest")
    assert bench.peak_flops(cuda, None, "32-true") == 67e12


def test_zero_warmup_allowed_zero_steps_refused():
    bench = _load()
    assert bench.parse(["--device", "cpu", "--warmup", "0"]).warmup == 0
    with pytest.raises(SystemExit):
        bench.parse(["--device", "cpu", "--steps", "0"])
