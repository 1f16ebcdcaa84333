#!/usr/bin/env bash
# One-shot GPU check (see benchmarks/README.md): a throughput table and 30-step bf16 fits of the GPU recipes,
# written to benchmarks/results/<date>-<gpu>.md and printed. Arguments go to benchmarks/gpu_check.py
# (--tiny: the CPU smoke run; --out DIR: another folder). The Python side keeps to its own time budget
# (450 s); the limit here (GPU_CHECK_LIMIT, default 480 s) only stops a run that hangs, and the results file
# is rewritten after every part, so what finished is kept.
set -u
cd "$(dirname "$0")/.."
PY="${PYTHON:-}"
if [ -z "$PY" ]; then
  if [ -x .venv/bin/python ]; then PY=.venv/bin/python; else PY=python3; fi
fi
export PYTHONUNBUFFERED=1
exec timeout --signal=INT --kill-after=20 "${GPU_CHECK_LIMIT:-480}" "$PY" benchmarks/gpu_check.py "$@"
