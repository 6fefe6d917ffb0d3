# The two set-up commands: `make run` and `make test`. Both work from a fresh clone.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
PYTEST := $(BIN)/pytest -p no:cacheprovider

.PHONY: install run test lint format test-sqlite test-postgresql test-servers migration clean

$(STAMP): pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -c constraints.txt -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

## Start Mailfleet: embedded SQLite in ./mailfleet-data, API and workers on 127.0.0.1:8000.
run: install
	$(BIN)/mailfleet migrate
	$(BIN)/mailfleet serve

## Lint, type-check, then the whole suite on SQLite and on PostgreSQL.
test: lint test-servers test-sqlite test-postgresql

lint: install
	$(BIN)/ruff check src tests scripts bench
	$(BIN)/ruff format --check src tests scripts bench
	$(BIN)/mypy

format: install
	$(BIN)/ruff check --fix src tests scripts bench
	$(BIN)/ruff format src tests scripts bench

# Dovecot and PowerDNS from Debian, when we may install them (root); otherwise the
# tests that need them skip and say how to install them.
test-servers:
	bash scripts/install-test-servers.sh

test-sqlite: install
	MAILFLEET_TEST_DATABASE=sqlite $(PYTEST) $(PYTEST_ARGS)

# Only the tests that touch the database run again on PostgreSQL.
test-postgresql: install
	MAILFLEET_TEST_DATABASE=postgresql $(PYTEST) -m db $(PYTEST_ARGS)

## A new Alembic revision from the models: make migration m="add mailboxes"
migration: install
	$(BIN)/python scripts/new_migration.py "$(m)"

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache .mypy_cache .ruff_cache
