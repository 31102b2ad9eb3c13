# The two commands: `make run` serves the API, `make test` checks everything.
# Both create .venv and install the project into it first; nothing else is needed but Python 3.11+.

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
HOST ?= 127.0.0.1
PORT ?= 8000
URL ?= http://$(HOST):$(PORT)
EXAMPLES ?= 100

.PHONY: install run test lint format typecheck pytest fuzz clean

$(BIN)/python:
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "cx-survey needs Python 3.11 or newer (set PYTHON=...)")'
	$(PYTHON) -m venv $(VENV)

# The client generator of tests/platform/test_generated_client.py wants an older typer than
# the service: it gets a directory of its own inside the venv, put first on its PYTHONPATH.
GENERATOR ?= openapi-python-client>=0.29,<0.30

$(STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	$(BIN)/python -m pip install --quiet --upgrade --target $(VENV)/generator '$(GENERATOR)'
	@touch $(STAMP)

install: $(STAMP)

run: install
	$(BIN)/cx-survey serve --host $(HOST) --port $(PORT)

test: install lint typecheck pytest

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/hadolint Dockerfile

format: install
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

typecheck: install
	$(BIN)/mypy

pytest: install
	$(BIN)/pytest

# Schemathesis from outside against a running service: it writes (orgs, surveys, keys, erasures),
# so never point it at real data. It may not revoke its own key (DELETE /v1/keys/{key_id}), and
# positive_data_acceptance is off: see docs/reliability.md.
fuzz: install
	@test -n "$(KEY)" || { echo "usage: make fuzz KEY=<admin key> [URL=$(URL)] [EXAMPLES=$(EXAMPLES)]" >&2; exit 2; }
	@echo "schemathesis run $(URL)/openapi.json (key not shown)"
	@$(BIN)/schemathesis run $(URL)/openapi.json -H "Authorization: Bearer $(KEY)" \
		--max-examples $(EXAMPLES) --workers 2 --exclude-path '/v1/keys/{key_id}' \
		--exclude-checks positive_data_acceptance

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
