# Two commands for a fresh machine: `make report` and `make test`. Both create .venv when missing.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
NBVAL := --nbval --nbval-current-env --nbval-sanitize-with tests/nbval/sanitize.cfg
DATA ?=
RUN_ARGS := $(if $(DATA),--data $(DATA),) $(ARGS)

.PHONY: setup report demo test test-slow lint bench nbval-refresh

$(STAMP): pyproject.toml
	test -d $(VENV) || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e ".[test]"
	$(BIN)/python -m ipykernel install --user --name cifar100-helpers --display-name "CIFAR-100 (.venv)" >/dev/null
	touch $(STAMP)

setup: $(STAMP)

report: $(STAMP)  ## the main job: recipe `auto` on CIFAR-100 into outputs/<recipe>-<time>/
	$(BIN)/python -m cifar100_helpers run --recipe auto $(RUN_ARGS)

demo: $(STAMP)  ## the whole pipeline offline on generated data, into outputs/demo/ (replaced each time)
	rm -rf outputs/demo
	$(BIN)/python -m cifar100_helpers run --recipe smoke --output outputs/demo

test: $(STAMP) lint  ## everything but the tests marked slow; under 10 minutes on 2 cores
	rm -rf outputs/nbval  # the nbval notebooks' run directory: start fresh
	$(BIN)/python -m pytest $(NBVAL) -m "not slow"

test-slow: $(STAMP)  ## seed and transfer through the pipeline (EfficientNetV2L on a CPU takes minutes)
	$(BIN)/python -m pytest -m slow

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

bench: $(STAMP)  ## training images/second of each recipe, e.g. make bench ARGS="--data PATH --no-verify"
	$(BIN)/python -m cifar100_helpers bench $(ARGS)

nbval-refresh: $(STAMP)  ## regenerate tests/nbval/*.ipynb after changing a notebook
	$(BIN)/python -m tests.refresh_nbval
