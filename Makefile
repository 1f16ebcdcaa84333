# vitlab — developer entry points. `make quickstart` and `make test` install what they need first.
PYTHON ?= python3.11
VENV ?= .venv
PY := $(VENV)/bin/python
PACKAGES := core pretrain peft stereo mtl uda
EDITABLES := -e "packages/core[test]" $(foreach p,$(filter-out core,$(PACKAGES)),-e packages/$(p))
# CPU/CUDA wheels of torch are large: pin the build we test with here; GPU users may install their own
# torch>=2.4 first (the packages only ask for a range).
TORCH := torch==2.14.1 torchvision==0.29.1
PYTEST_ARGS ?=
# pytest-xdist workers; one OpenMP thread each (the tests' models are tiny: overhead, not FLOPs, dominates)
TEST_WORKERS ?= 2

.PHONY: install quickstart test lint bench clean

install: $(VENV)/.installed

$(VENV)/.installed: packages/*/pyproject.toml Makefile
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet $(TORCH)
	$(PY) -m pip install --quiet $(EDITABLES) hatchling ruff
	touch $@

quickstart: install
	$(VENV)/bin/vitlab fit --config configs/core/quickstart.yaml

test: install
	OMP_NUM_THREADS=1 $(PY) -m pytest -q -n $(TEST_WORKERS) --dist loadgroup $(PYTEST_ARGS)

lint: install
	$(VENV)/bin/ruff check packages tests benchmarks

bench: install
	$(PY) benchmarks/synthetic_throughput.py
	$(PY) benchmarks/train_step.py

clean:
	rm -rf $(VENV) runs lightning_logs wandb .pytest_cache
