# Agent Factory — developer entry points. `make run` and `make test` are all a newcomer needs.
SHELL := /bin/bash
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
HOST ?= 127.0.0.1
PORT ?= 8000
PIP_FLAGS := --disable-pip-version-check --quiet

.PHONY: run test lint format install install-dev bootstrap worker beat bench messages clean-data help

help:
	@echo "make run    - install, migrate, seed the demo tenant and serve on http://localhost:$(PORT)"
	@echo "make test   - install dev dependencies, lint, and run the whole test suite"

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install $(PIP_FLAGS) --upgrade pip

$(VENV)/.runtime: $(BIN)/python pyproject.toml constraints.txt
	$(BIN)/pip install $(PIP_FLAGS) -c constraints.txt -e .
	@touch $@

$(VENV)/.dev: $(VENV)/.runtime
	$(BIN)/pip install $(PIP_FLAGS) -c constraints.txt -e '.[dev]'
	@touch $@

install: $(VENV)/.runtime
install-dev: $(VENV)/.dev

bootstrap: install
	SITE_PORT=$(PORT) $(BIN)/python manage.py bootstrap --demo

run: bootstrap
	$(BIN)/python manage.py serve --host $(HOST) --port $(PORT)

worker: install
	$(BIN)/celery -A config worker --loglevel=INFO

beat: install
	$(BIN)/celery -A config beat --loglevel=INFO

lint: install-dev
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy .

format: install-dev
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

test: lint
	$(BIN)/pytest $(PYTEST_ARGS)

bench: install-dev
	$(BIN)/python bench/tenants.py

messages: install-dev
	$(BIN)/python manage.py makemessages --all --ignore=.venv --ignore=.data
	$(BIN)/python manage.py compile_catalogs

clean-data:
	rm -rf .data
