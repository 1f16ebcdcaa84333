"""``bash benchmarks/gpu_check.sh --tiny`` (the GPU check's code path on a CPU with tiny models) finishes, and its
results file has a row for every throughput workload and every recipe fit, none of them failed."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
THROUGHPUT = ["MAE ViT/16", "ViT/16 supervised", "CroCo-Stereo"]
RECIPES = ["pretrain/imagenet/mae_vitb.yaml", "stereo/croco_stereo.yaml", "stereo/synthetic_bb.yaml",
           "mtl/pascal_tadformer.yaml", "uda/gta2cs_daformer.yaml", "uda/gta2cs_clda.yaml",
           "peft/ade20k_iconformer.yaml"]


@pytest.mark.slow
def test_tiny_check_writes_every_row(tmp_path):
    env = {**os.environ, "PYTHON": sys.executable, "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "2")}
    env.pop("VITLAB_RUN_DIR", None)
    shipped = set((REPO / "benchmarks" / "results").glob("*.md"))
    proc = subprocess.run(["bash", str(REPO / "benchmarks" / "gpu_check.sh"), "--tiny", "--out", str(tmp_path),
                           "--budget", "400"],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    tail = (proc.stdout + proc.stderr)[-4000:]
    files = list(tmp_path.glob("*-cpu-tiny.md"))
    assert proc.returncode == 0 and len(files) == 1, tail
    text = files[0].read_text()
    rows = [line for line in text.splitlines() if line.startswith("| ") and not line.startswith("| workload")
            and not line.startswith("| recipe")]
    for name in THROUGHPUT:
        eager = [r for r in rows if r.startswith(f"| {name}") and "| eager |" in r]
        assert len(eager) == 1 and eager[0].rstrip().endswith("| ok |"), (name, eager)
        assert re.search(r"\| [0-9.]+ (img|pairs)/s \|", eager[0]), eager[0]
    assert sum("| compiled |" in r and "skipped: --tiny runs eager only" in r for r in rows) == 3
    for recipe in RECIPES:
        row = [r for r in rows if r.startswith(f"| `{recipe}`")]
        assert len(row) == 1 and row[0].rstrip().endswith("| ok |"), (recipe, row)
        assert re.search(r"\| [0-9.]+ [a-z+/ ]+/s \|", row[0]), row[0]
    assert "## Failures" not in text
    assert set((REPO / "benchmarks" / "results").glob("*.md")) == shipped, "--out was not followed"
    assert not list(tmp_path.glob("runs")) and not list(tmp_path.glob("wandb")), "the fits wrote into the working directory"
