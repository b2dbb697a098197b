# zoo — `make help` lists the targets.
VENV  ?= .venv
PY    := $(VENV)/bin/python
# the CPU build of torch; on a GPU machine: make setup TORCH=torch
TORCH ?= torch==2.13.0
ARGS  ?=

.PHONY: help setup run test test-slow test-gpu bench figures clean

help:  ## list the targets
	@grep -E '^[a-z-]+:.*##' $(MAKEFILE_LIST) | sed 's/:.*## /\t/' | expand -t 14

setup: $(VENV)/.installed  ## create .venv and install zoo with its dev extras

$(VENV)/.installed: pyproject.toml
	python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q "$(TORCH)"
	$(PY) -m pip install -q -e '.[dev]'
	touch $@

run: setup  ## the default job: Based on MQAR (CPU, ~2 min); extra overrides via ARGS="..."
	$(PY) -m zoo $(ARGS)

test: setup  ## the fast test suite (CPU; Triton kernels run in the interpreter)
	$(PY) -m pytest -q $(ARGS)

test-slow: setup  ## slower tests (longer CPU trainings)
	$(PY) -m pytest -q -m slow $(ARGS)

test-gpu: setup  ## GPU tests (kernels in bf16/fp32 against their references, learning checks)
	$(PY) -m pytest -q -m gpu $(ARGS)

bench: setup  ## kernel and harness benchmarks (GPU); tables go to results/bench/
	$(PY) -m kernels.bench $(ARGS)
	$(PY) -m zoo.bench

figures: setup  ## leaderboards and figures from everything under results/
	$(PY) -m zoo.report results/

clean:  ## remove the environment and caches (keeps results/)
	rm -rf $(VENV) .pytest_cache *.egg-info
