# Two commands for a fresh machine: `make report` and `make test`. Both create .venv when missing.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
NBVAL := --nbval --nbval-current-env --nbval-sanitize-with tests/nbval/sanitize.cfg
DATA ?=
# pytest-xdist workers for make test and test-compat (TEST_WORKERS=1: none); each test file stays in one worker,
# the nbval notebooks all in one, in order (tests/conftest.py)
TEST_WORKERS ?= 2
WORKERS := $(if $(filter-out 0 1,$(TEST_WORKERS)),-n $(TEST_WORKERS) --dist loadscope,)
RUN_ARGS := $(if $(DATA),--data $(DATA),) $(ARGS)
# On Linux with an NVIDIA GPU (nvidia-smi lists one), TensorFlow's CUDA libraries too: the [gpu] extra,
# tensorflow[and-cuda]. Plain tensorflow has none there and would train on the CPU.
GPU_EXTRA := $(shell [ "$$(uname -s)" = Linux ] && nvidia-smi --query-gpu=name --format=csv,noheader 2>/dev/null | grep -q . && echo ,gpu)

.PHONY: setup report demo test test-slow test-compat lint bench gpu-check nbval-refresh

$(STAMP): pyproject.toml constraints.txt
	test -d $(VENV) || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -c constraints.txt -e ".[test,sweep,export$(GPU_EXTRA)]"
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
	$(BIN)/python -m pytest $(NBVAL) $(WORKERS) -m "not slow"

test-slow: $(STAMP)  ## seed and transfer through the pipeline (EfficientNetV2L on a CPU takes minutes)
	$(BIN)/python -m pytest -m slow

# Google Colab's stacks (compat/colab-STACK.txt), each in its own .venv-colab-STACK: Colab's TensorFlow, Keras,
# numpy and Jupyter versions, then this package with nothing pinned but them, as `pip install` does on Colab.
# `make test-compat COMPAT=tf220` runs one stack; PYTHON_tf220=/path/to/python3.12 picks its interpreter;
# PYTEST_ARGS=... adds pytest options; COMPAT_MARKS picks the tests (CI adds the Colab rehearsal: "not slow or rehearsal").
COMPAT ?= tf220 tf219
COMPAT_MARKS ?= not slow
first_python = $(firstword $(foreach p,$(1),$(shell $(p) -c "" >/dev/null 2>&1 && echo $(p))))
PYENV_VERSIONS = $(or $(PYENV_ROOT),$(HOME)/.pyenv)/versions
PYTHON_tf220 ?= $(call first_python,python3.12 $(sort $(wildcard $(PYENV_VERSIONS)/3.12*/bin/python3.12)))
PYTHON_tf219 ?= $(call first_python,python3.11 $(sort $(wildcard $(PYENV_VERSIONS)/3.11*/bin/python3.11)))

.venv-colab-%/.installed: pyproject.toml compat/colab-%.txt
	@test -n "$(PYTHON_$*)" || { echo "error: no Python for stack $* (compat/colab-$*.txt): set PYTHON_$*=PATH"; exit 2; }
	test -d .venv-colab-$* || $(PYTHON_$*) -m venv .venv-colab-$*
	.venv-colab-$*/bin/python -m pip install -q --upgrade pip
	.venv-colab-$*/bin/python -m pip install -q -r compat/colab-$*.txt -e ".[test]"
	touch $@

test-compat: $(foreach s,$(COMPAT),.venv-colab-$(s)/.installed)  ## the non-slow tests on Colab's TF/Keras stacks
	@status=0; for s in $(COMPAT); do \
	  echo "== Colab stack $$s: $$(.venv-colab-$$s/bin/python -c 'import platform, tensorflow as tf, keras, numpy; \
	    print("Python", platform.python_version(), "TensorFlow", tf.__version__, "Keras", keras.__version__, "numpy", numpy.__version__)' 2>/dev/null)"; \
	  rm -rf outputs/nbval; \
	  PYDEVD_DISABLE_FILE_VALIDATION=1 .venv-colab-$$s/bin/python -m pytest -p no:cacheprovider $(NBVAL) $(WORKERS) -m "$(COMPAT_MARKS)" $(PYTEST_ARGS) || status=1; \
	done; exit $$status

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

gpu-check: $(STAMP)  ## on a GPU machine: bench of every recipe + a short transfer run, one JSON (make gpu-check DATA=...)
	$(BIN)/python -m cifar100_helpers gpu-check $(RUN_ARGS)

bench: $(STAMP)  ## training images/second of each recipe, e.g. make bench ARGS="--data PATH --no-verify"
	$(BIN)/python -m cifar100_helpers bench $(ARGS)

nbval-refresh: $(STAMP)  ## regenerate tests/nbval/*.ipynb after changing a notebook
	$(BIN)/python -m tests.refresh_nbval
