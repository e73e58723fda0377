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
# Prefect writes its profile and database under PREFECT_HOME (default ~/.prefect):
# keep it in the project's ignored work folder, and keep it offline.
export PREFECT_HOME ?= $(CURDIR)/.loopwise/prefect
export PREFECT_SERVER_ANALYTICS_ENABLED ?= false
export DO_NOT_TRACK ?= 1
export GX_ANALYTICS_ENABLED ?= false

.PHONY: help install chromium test test-fast lint demo demo-stream demo-sim demo-clean down bench bench-quick clean labelstudio-start labelstudio-stop prefect-start prefect-stop

help:  ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | sed 's/:.*## /\t/'

$(CURDIR)/.tools/bin/uv:
	python3 -m venv .tools
	.tools/bin/python -m pip install --quiet --disable-pip-version-check uv

.venv/.synced: uv.lock pyproject.toml | $(UV)
	$(UV) sync --locked
	@touch $@

install: .venv/.synced  ## create .venv from uv.lock

# The browser tests (tests/browser/) drive Debian's Chromium through Playwright's
# Python driver; no browser is ever downloaded by a test tool. Installed as root when absent.
chromium:  ## Debian's chromium for the browser tests (apt-get, only when /usr/bin/chromium is absent)
	@if [ ! -x /usr/bin/chromium ]; then \
	  apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends chromium; \
	fi

test: install chromium  ## the whole suite: unit, behaviour, simulation, and integration against a real Label Studio
	$(RUN) ruff check .
	$(RUN) pytest

test-fast: install  ## the suite without the slow and the server tests
	$(RUN) pytest -m "not slow and not integration"

labelstudio-start: install  ## start a local Label Studio on 127.0.0.1:8080; URL and token in .loopwise/labelstudio.env
	$(RUN) python -m devstack.labelstudio_server start --port 8080

labelstudio-stop: install  ## stop it (by process id)
	$(RUN) python -m devstack.labelstudio_server stop

prefect-start: install  ## the local Prefect server on 127.0.0.1:4200 (or LOOPWISE_PREFECT_PORT) that loopwise run and make demo reuse
	$(RUN) python -m devstack.prefect_server start

prefect-stop: install  ## stop it (by process id)
	$(RUN) python -m devstack.prefect_server stop

lint: install  ## ruff
	$(RUN) ruff check .
	$(RUN) ruff format --check .

demo: install  ## the real loop: Label Studio, Prefect server + worker, MLflow, simulated annotators, to a stop
	$(RUN) python -m devstack.demo

demo-stream: install  ## the production stream: gateway, live traffic with a drift midway, simulated annotators, triggers and retrains
	$(RUN) python -m devstack.demo_stream

demo-sim: install  ## simulated campaign on a real dataset (no servers): default strategy vs random
	$(RUN) python -m loopwise.demo --out demo-output

down:  ## stop every server the demo or loopwise run started, the Prefect server included (by process id)
	-$(RUN) python -m devstack.servers stop
	-$(RUN) python -m devstack.labelstudio_server stop

demo-clean: down  ## forget the demo campaign: its state, MLflow store, Prefect and Label Studio data
	rm -rf .loopwise/store/letter-demo .loopwise/store/letter-stream .loopwise/mlflow.db \
	  .loopwise/mlartifacts/letter-demo .loopwise/mlartifacts/letter-stream \
	  .loopwise/labelstudio/demo-data .loopwise/prefect/prefect.db .loopwise/run

bench: install  ## label efficiency, selection cost (vs modAL, scikit-activeml), Label Studio I/O → bench/results/
	$(RUN) python bench/label_efficiency.py
	$(RUN) python bench/selection_cost.py
	$(RUN) python bench/labelstudio_io.py
	$(RUN) python bench/control_share.py

bench-quick: install  ## a shorter bench (fewer seeds, smaller pools) for a quick look
	$(RUN) python bench/label_efficiency.py --quick
	$(RUN) python bench/selection_cost.py --quick
	$(RUN) python bench/labelstudio_io.py --n 500 --repeats 1 --seeds 2

clean:  ## remove the environments and generated output
	rm -rf .venv .tools demo-output .pytest_cache .ruff_cache
