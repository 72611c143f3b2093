# Rill developer entry points.  Everything runs inside .venv, created on demand.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: run test soak bench lint vectors clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e '.[test,dev]'
	touch $(STAMP)

## run: create the venv, install, start a node on the default home
run: $(STAMP)
	$(BIN)/rill node run

## test: create the venv, install, run the whole suite (soak tests excluded)
test: $(STAMP)
	$(BIN)/python -m pytest -q -m "not soak"

## soak: the long-running tests only
soak: $(STAMP)
	$(BIN)/python -m pytest -q -m soak

## bench: measure, and write the table to docs/BENCHMARKS.md
bench: $(STAMP)
	$(BIN)/python tests/bench/run.py --out docs/BENCHMARKS.md

## lint: ruff everywhere, mypy --strict on protocol/ and wallet/
lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/mypy --strict protocol wallet

## vectors: regenerate tests/vectors/*.json (deterministic)
vectors: $(STAMP)
	$(BIN)/python tests/vectors/generate.py

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache .mypy_cache .ruff_cache .hypothesis
