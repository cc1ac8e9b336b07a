# The two commands a new user needs (README): `make bench` and `make test`.
# Each builds its own virtual environment from this project's files; nothing else is assumed.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV ?= .venv
BIN := $(VENV)/bin
HYPOTHESIS_PROFILE ?= ci

.PHONY: bench test test-thorough datapath venv clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(VENV)/.installed-test: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $@

$(VENV)/.installed-bench: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e '.[bench]'
	touch $@

venv: $(VENV)/.installed-test $(VENV)/.installed-bench

bench: $(VENV)/.installed-bench
	$(BIN)/kvtier bench

test: $(VENV)/.installed-test
	$(BIN)/python -m pytest -q --hypothesis-profile=$(HYPOTHESIS_PROFILE)

test-thorough:
	$(MAKE) test HYPOTHESIS_PROFILE=thorough

datapath: $(VENV)/.installed-bench
	$(BIN)/python bench/datapath.py

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache .hypothesis results
	find kvtier -name "*.nbi" -delete -o -name "*.nbc" -delete  # numba caches (stale after kernel edits)
