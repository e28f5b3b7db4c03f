# Two commands: `make demo` (the whole stack and a real scenario end to end) and
# `make test` (lint, types and the whole test suite against real services).
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
export PATH := $(PATH):/usr/sbin

.PHONY: demo test lint unit bench docs clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV) || { echo "python3 -m venv failed: install python3-venv (apt-get install python3-venv)"; exit 1; }
	$(BIN)/pip install -q --upgrade pip

$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(BIN)/pip install -q -e '.[test]'
	touch $@

demo: $(VENV)/.installed
	$(BIN)/twinctl demo

test: $(VENV)/.installed
	bash scripts/ensure-services.sh
	$(BIN)/ruff check .
	$(BIN)/mypy
	$(BIN)/python -m pytest -q

unit: $(VENV)/.installed
	$(BIN)/python -m pytest -q -m "not integration"

bench: $(VENV)/.installed
	bash scripts/ensure-services.sh
	$(BIN)/python bench/e2e.py
	$(BIN)/python bench/timeline.py
	$(BIN)/python bench/engine.py
	$(BIN)/python bench/outbox.py
	$(BIN)/python bench/realtime.py
	$(BIN)/python bench/fairness.py
	$(BIN)/python bench/redis_footprint.py
	$(BIN)/python bench/sweep.py

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
