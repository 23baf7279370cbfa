# Two commands do all the set-up (README): `make run` and `make test`.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin

.PHONY: run test test-all bench docs clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

# Stamps re-run the install when pyproject.toml changes.
$(VENV)/.base: pyproject.toml | $(BIN)/python
	$(BIN)/pip install -e .
	touch $@

$(VENV)/.test: pyproject.toml | $(BIN)/python
	$(BIN)/pip install -e ".[test]"
	touch $@ $(VENV)/.base

## run: install faceaudit and run the main job on its embedded default (a simulated world's audit)
run: $(VENV)/.base
	$(BIN)/faceaudit audit --out faceaudit-out

## test: install faceaudit with the test and peer-library extras, run the whole suite
test: $(VENV)/.test
	$(BIN)/python -m pytest

## test-all: the default suite plus the slow checks (d = 128 Monte Carlo, SBC, posterior recovery)
test-all: $(VENV)/.test
	$(BIN)/python -m pytest -m "slow or not slow"

## bench: time faceaudit against the peer libraries (minutes; writes benchmarks/results/)
bench: $(VENV)/.test
	$(BIN)/python benchmarks/metrics.py --out benchmarks/results/metrics.json

## docs: build the documentation site into site/ offline (methods, validation, scale-out, API reference)
docs: $(VENV)/.test
	$(BIN)/mkdocs build --strict

clean:
	rm -rf $(VENV) .pytest_cache .hypothesis site
