# The README's first two commands: `make run` and `make test`. Everything installs itself.
PY ?= python3.11
VENV ?= .venv
BIN := $(VENV)/bin
DATA_DIR ?= $(abspath ../shared/datasets)
export VIGIL_DATA_DIR ?= $(DATA_DIR)

.PHONY: run test setup setup-test default-model lint clean

$(BIN)/python:
	$(PY) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip

$(VENV)/.installed: $(BIN)/python pyproject.toml requirements.lock
	$(BIN)/pip install --quiet -r requirements.lock
	$(BIN)/pip install --quiet --no-deps -e .
	touch $@

setup: $(VENV)/.installed

run: setup
	$(BIN)/vigil serve --migrate

test: setup
	$(BIN)/python -m pytest

# Retrain the shipped default bundle (about a minute on 2 CPU cores).
default-model: setup
	$(BIN)/vigil train --method deterministic --data-dir $(DATA_DIR) --out models/bundles/default --name mnist-default --epochs 6 --ood-scorer mahalanobis

lint: setup
	$(BIN)/ruff check service models training tests
	$(BIN)/ruff format --check service models training tests

clean:
	rm -rf $(VENV) vigil.db vigil.db-*

# Re-lock after changing dependencies in pyproject.toml (from a venv that passes `make test`).
lock:
	$(BIN)/pip freeze --exclude-editable | grep -v '^-e' | sed '1i # Locked dependency set (pip freeze of a verified venv). Regenerate with `make lock`.' > requirements.lock
