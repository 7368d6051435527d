# aura_lab: `make lab`, `make check` and `make test` each set up .venv on first use.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.aura-installed
# torch is pinned here to the local CPU wheel (an unpinned torch pulls a multi-GB CUDA build)
TORCH  ?= torch==2.13.0
LAB_ARGS ?=
PYTEST_ARGS ?=
# pytest-xdist workers for `make check` and `make test` (each kernel uses every core already; 0: one process)
JOBS ?= 2

.PHONY: lab check test venv build notebooks docs lint clean

venv: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet "$(TORCH)"
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $(STAMP)

# `aura-lab build` (the kernels, the MAX op library and its warmed graphs) once per
# install and kernel source change, not on every `make test`: the tests build any kernel missing
# from the cache themselves (tests/conftest.py), so a stale stamp costs time, never correctness
KERNEL_SOURCES := $(shell find kernels -name '*.mojo')
BUILT  := $(VENV)/.aura-built
$(BUILT): $(STAMP) $(KERNEL_SOURCES)
	$(BIN)/aura-lab build
	touch $(BUILT)

build: $(STAMP)
	$(BIN)/aura-lab build

lab: $(BUILT)
	$(BIN)/aura-lab lab $(LAB_ARGS)

NBVAL := --nbval-lax --nbval-current-env --nbval-sanitize-with notebooks/nbval_sanitize.cfg

# the fast loop: ruff, then the unit layer (tests/unit) without the `slow` cases, test by test
check: $(BUILT)
	$(BIN)/ruff check .
	$(BIN)/python -m pytest tests/unit -m "not slow" -n $(JOBS) --durations=15 $(PYTEST_ARGS)

# everything: the notebooks and every layer (tests/browser, integration, reliability, unit). One
# file (a notebook's cells, one Lab server, the signal and soak tests) runs on one worker, in
# order; the unit tests go out one by one; the long files and tests first (tests/conftest.py:
# LONG_FIRST, ONE_BY_ONE). Repetition tests run a few rounds: PYTEST_ARGS=--full-rounds for all
test: $(BUILT)
	$(BIN)/python -m pytest notebooks/*.ipynb tests $(NBVAL) -n $(JOBS) --dist loadfile --no-loadscope-reorder \
		--durations=40 $(PYTEST_ARGS)

notebooks: $(STAMP)
	$(BIN)/python tools/sync_notebooks.py

# the docs site into site/ from docs/ (tables generated from data/results/); warnings are errors
docs: $(STAMP)
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict

# ruff with the project's rules (pyproject.toml [tool.ruff])
lint: $(STAMP)
	$(BIN)/ruff check .

clean:
	rm -rf site $(VENV) .pytest_cache .hypothesis
