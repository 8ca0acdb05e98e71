# actbench: every target that runs code depends on the virtual environment via a stamp file.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
ARGS ?=
SWEEP ?= sweeps/default.yaml
BACKEND ?= local

.DEFAULT_GOAL := help
.PHONY: help install train sweep report dashboard experiments test test-slow lint format atlas bench clean

help:  ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-10s %s\n", $$1, $$2}'
	@echo "  Pass Hydra overrides with ARGS, e.g. make train ARGS=\"activation=relu optimizer.lr=3e-3\""

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)  ## create .venv with pip and install actbench with dev extras

train: $(STAMP)  ## one training run (default: GELU MLP on MNIST-1D); overrides via ARGS
	$(BIN)/python -m actbench.train $(ARGS)

sweep: $(STAMP)  ## run a sweep file (SWEEP=sweeps/default.yaml, BACKEND=local|slurm|wandb), then its report
	$(BIN)/actbench-sweep $(SWEEP) --backend $(BACKEND) $(ARGS)

report: $(STAMP)  ## statistics and figures from a sweep's records -> reports/<sweep>/ (SWEEP=...)
	$(BIN)/actbench-report $(SWEEP) $(ARGS)

dashboard: $(STAMP)  ## offline HTML dashboard + W&B workspace spec -> reports/<sweep>/ (SWEEP=..., WANDB=1 saves it)
	$(BIN)/actbench-dashboard $(SWEEP) $(if $(filter 1,$(WANDB)),--wandb) $(ARGS)

experiments: $(STAMP)  ## regenerate docs/experiments/*.md from committed records (ARGS=--check to verify)
	$(BIN)/actbench-experiments $(ARGS)

test: $(STAMP)  ## install, then run the test suite (slow tests excluded)
	$(BIN)/python -m pytest -q $(ARGS)

test-slow:  $(STAMP)  ## only the tests marked slow
	$(BIN)/python -m pytest -q -m slow $(ARGS)

lint: $(STAMP)  ## ruff lint and format check
	$(BIN)/ruff check src tests
	$(BIN)/ruff format --check src tests

format: $(STAMP)  ## apply ruff formatting and safe fixes
	$(BIN)/ruff check --fix src tests
	$(BIN)/ruff format src tests

atlas: $(STAMP)  ## activation atlas: measured properties, claims audit, figures -> reports/atlas/
	$(BIN)/actbench-atlas $(ARGS)

bench: $(STAMP)  ## benchmarks (steps/s vs a plain loop, diagnostics, HVP, start-up, sweep, memory) -> reports/bench/
	$(BIN)/actbench-bench $(ARGS)

clean:  ## remove run outputs (keeps .venv and reports)
	rm -rf outputs multirun
