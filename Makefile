# The single entry point. `make run`: Runstore on embedded defaults with demo
# data. `make test`: the test stack (PostgreSQL+TimescaleDB, Redis, SeaweedFS,
# Chromium) and the whole suite on SQLite and on PostgreSQL.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PORT ?= 8000

.PHONY: run test venv services services-down lint bench clean-var

venv: $(VENV)/.installed

$(VENV)/.installed: requirements.txt requirements-dev.txt $(wildcard client/pyproject.toml) scripts/bootstrap.sh
	scripts/bootstrap.sh "$(PYTHON)" "$(VENV)"
	@touch $@

run: venv
	PORT=$(PORT) scripts/run.sh

test: venv
	scripts/services.sh up
	scripts/test.sh

services: venv
	scripts/services.sh up

services-down:
	scripts/services.sh down

lint: venv
	$(VENV)/bin/lint-imports --no-cache
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy
	cd client && ../$(VENV)/bin/mypy --strict --cache-dir ../var/mypy-cache-client

bench: venv
	bench/run_all.sh
