# aura_lab: `make lab`, `make check` and `make test` each set up .venv on first use.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.aura-installed
# torch is pinned here to the local CPU wheel (an unpinned torch pulls a multi-GB CUDA build)
TORCH  ?= torch==2.13.0
LAB_ARGS ?=
PYTEST_ARGS ?=
# pytest-xdist workers for `make check` and `make test` (each kernel uses every core already)
JOBS ?= 2

.PHONY: lab check test venv build notebooks docs lint clean

venv: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet "$(TORCH)"
	$(BIN)/python -m pip install --quiet -e '.[test]'
	$(BIN)/aura-lab build
	touch $(STAMP)

build: $(STAMP)
	$(BIN)/aura-lab build

lab: $(STAMP)
	$(BIN)/aura-lab lab $(LAB_ARGS)

NBVAL := --nbval-lax --nbval-current-env --nbval-sanitize-with notebooks/nbval_sanitize.cfg

XDIST := -n $(JOBS) --dist loadgroup

# the fast loop: ruff, then the unit layer (tests/unit) without the `slow` cases
check: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/python -m pytest tests/unit -m "not slow" $(XDIST) --durations=15 $(PYTEST_ARGS)

# everything: every layer (tests/unit, integration, reliability, browser) and the notebooks; a
# notebook's cells, and each file in SERIAL_GROUPS (tests/conftest.py), run on one worker
test: $(STAMP)
	$(BIN)/aura-lab build
	$(BIN)/python -m pytest tests notebooks/*.ipynb $(NBVAL) $(XDIST) --durations=40 $(PYTEST_ARGS)

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
