# Two entry points for people: `make demo` (set up everything, run the end-to-end demo) and
# `make test` (set up the test environment, run the test suite).  `make validate` regenerates
# the validation record (slow).
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
PIP    := $(BIN)/python -m pip
OUT    ?= demo_output

.PHONY: demo test validate validate-quick setup setup-dev clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(PIP) install --quiet --upgrade pip

# torch is installed first and pinned: this machine has a CPU build of 2.13.0, and an unpinned
# torch requirement would pull several GB of CUDA packages.
$(VENV)/.all: pyproject.toml | $(BIN)/python
	$(PIP) install --quiet "torch==2.13.0"
	$(PIP) install --quiet -e ".[all]"
	touch $@ $(VENV)/.dev

$(VENV)/.dev: pyproject.toml | $(BIN)/python
	$(PIP) install --quiet "torch==2.13.0"
	$(PIP) install --quiet -e ".[dev]"
	touch $@

setup: $(VENV)/.all
setup-dev: $(VENV)/.dev

demo: setup
	$(BIN)/pbpk demo --out $(OUT)

test: setup-dev
	$(BIN)/python -m pytest -q -n 2 --dist worksteal -m "not slow" --durations=15

validate: setup
	$(BIN)/python -m validation.run

validate-quick: setup-dev
	$(BIN)/python -m validation.run --quick

clean:
	rm -rf $(VENV) $(OUT) .pytest_cache
