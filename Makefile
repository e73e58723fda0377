# Loopwise — every target installs what it needs on a fresh machine.
SHELL := /bin/bash
.DEFAULT_GOAL := help

# uv from PATH, or a private copy installed from PyPI into .tools/ (never the home directory).
UV := $(shell command -v uv 2>/dev/null || echo $(CURDIR)/.tools/bin/uv)
RUN := $(UV) run --locked --no-sync
# One BLAS thread: stable timings on a shared 2-core machine, no oversubscription.
export OMP_NUM_THREADS ?= 1
export OPENBLAS_NUM_THREADS ?= 1
export MKL_NUM_THREADS ?= 1
export PYTHONDONTWRITEBYTECODE := 1

.PHONY: help install test test-fast lint demo bench bench-quick clean

help:  ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | sed 's/:.*## /\t/'

$(CURDIR)/.tools/bin/uv:
	python3 -m venv .tools
	.tools/bin/python -m pip install --quiet --disable-pip-version-check uv

.venv/.synced: uv.lock pyproject.toml | $(UV)
	$(UV) sync --locked
	@touch $@

install: .venv/.synced  ## create .venv from uv.lock

test: install  ## the whole test suite (unit, behaviour, simulation)
	$(RUN) ruff check .
	$(RUN) pytest

test-fast: install  ## the suite without the slow simulation tests
	$(RUN) pytest -m "not slow"

lint: install  ## ruff
	$(RUN) ruff check .
	$(RUN) ruff format --check .

demo: install  ## simulated campaign on a real dataset: default strategy vs random
	$(RUN) python -m loopwise.demo --out demo-output

bench: install  ## label efficiency and selection cost vs modAL and scikit-activeml → bench/results/
	$(RUN) python bench/label_efficiency.py
	$(RUN) python bench/selection_cost.py

bench-quick: install  ## a shorter bench (fewer seeds, smaller pools) for a quick look
	$(RUN) python bench/label_efficiency.py --quick
	$(RUN) python bench/selection_cost.py --quick

clean:  ## remove the environments and generated output
	rm -rf .venv .tools demo-output .pytest_cache .ruff_cache
