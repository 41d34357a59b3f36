# Two commands do all the set-up on a fresh machine:
#   make demo   - install into .venv and run `demask demo` on the shipped tiny model
#   make test   - install into .venv, check lint, format and types, and run the test suite
# torch==2.13.0 goes in first so that pip never pulls a CUDA build on a CPU machine.
PY ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.demask-installed
# CI runs the slow tests too; a developer's `make test` skips them.
PYTEST_MARK := $(if $(filter true,$(CI)),,-m "not slow")

LINTED := demask tests benchmarks experiments

.PHONY: install demo lint test test-all clean

$(STAMP): pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet torch==2.13.0
	$(BIN)/pip install --quiet -e ".[test]"
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(BIN)/demask demo

# ruff (lint and format) and mypy, configured in pyproject.toml
lint: $(STAMP)
	$(BIN)/ruff check $(LINTED)
	$(BIN)/ruff format --check $(LINTED)
	$(BIN)/mypy

test: lint
	$(BIN)/python -m pytest -q $(PYTEST_MARK)

test-all: lint
	$(BIN)/python -m pytest -q

clean:
	rm -rf $(VENV) build *.egg-info
