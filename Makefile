# `make test` and `make demo` are the two commands a newcomer needs; both set up .venv first.
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
# Re-install whenever pyproject.toml changes.
INSTALLED := $(VENV)/.installed
# Local commands keep an embedded SQLite Dagster instance here (git-ignored).
export DAGSTER_HOME := $(CURDIR)/.dagster_home

.PHONY: test lint demo dev clean

$(INSTALLED): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $(INSTALLED)

lint: $(INSTALLED)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

test: lint
	$(BIN)/pytest

demo: $(INSTALLED)
	$(BIN)/ct-pipeline demo

dev: $(INSTALLED)
	$(BIN)/ct-pipeline dev

clean:
	rm -rf $(VENV) .dagster_home .ct_pipeline .pytest_cache .ruff_cache
