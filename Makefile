# Loopline developer commands. `make up` runs the whole system locally; `make test` runs the tests.
# Both install what they need on a fresh machine (a virtualenv in .venv, the local stack's servers
# and model weights in .loopline/install).

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp
# The local stack serves two models; MODEL is the default one (1.5b for `make up`, 0.5b for the
# tests, which call the 1.5b model by name only where a second model or a stronger judge counts).
MODEL  ?= 1.5b

.PHONY: help install up down status logs test unit integration e2e chaos lint clean

help:
	@echo "make up       start the local stack (Kafka, Argilla, LLM) and the six services"
	@echo "make down     stop everything make up started"
	@echo "make status   show what is running, with URLs"
	@echo "make logs     follow the services' logs"
	@echo "make test     lint, type-check, then run unit and integration tests (real stack)"
	@echo "make unit     unit tests only (no servers)"
	@echo "make e2e      one end-to-end test per shipped flow (real stack, bot annotators)"
	@echo "make chaos    the chaos suite's long form (make test runs its short form)"

$(STAMP): pyproject.toml clients/python/pyproject.toml
	@$(PYTHON) -m venv --help >/dev/null 2>&1 || { apt-get update -qq && apt-get install -y -qq python3-venv; }
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e ./clients/python -e '.[dev]'
	@touch $(STAMP)

install: $(STAMP)

# Both models are served; MODEL is the default one. WEIGHTS=0.5b serves both names with the
# 0.5B weights (small machines).
up: install
	$(BIN)/loopline stack up --model $(MODEL) --weights $(or $(WEIGHTS),each)
	$(BIN)/loopline services up --model $(MODEL)

down: install
	-$(BIN)/loopline services down
	$(BIN)/loopline stack down

status: install
	$(BIN)/loopline stack status
	$(BIN)/loopline services status

logs:
	tail -n 50 -F .loopline/logs/service-*.log

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

unit: install
	$(BIN)/pytest -q tests/unit

integration: install
	$(BIN)/loopline stack install --model 0.5b --weights each
	$(BIN)/pytest -q tests/integration

# `make test` runs the chaos suite's short form (300 records); `make chaos` its long form.
test: lint
	$(BIN)/loopline stack install --model 0.5b --weights each
	$(BIN)/pytest -q

chaos: install
	$(BIN)/loopline stack install --model 0.5b --weights each
	$(BIN)/pytest -q -s tests/chaos --chaos-long

e2e: install
	$(BIN)/loopline stack install --model 0.5b --weights each
	$(BIN)/pytest -q tests/integration/e2e

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
