# The two commands: `make run` and `make test`. Both set everything up on a fresh machine.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp

.PHONY: run test install lint typecheck unit bench clean

run: install
	$(BIN)/vault-service serve --demo

test: install lint typecheck unit

install: $(STAMP)

# One pip resolve for everything: a second, separate install can upgrade botocore past
# aiobotocore's pin (see shared/reference/deps.md).
$(STAMP): setup.cfg pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test]'
	touch $(STAMP)

lint:
	$(BIN)/ruff check service tests bench
	$(BIN)/ruff format --check service tests bench

typecheck:
	$(BIN)/mypy

unit:
	$(BIN)/pytest

bench: install
	@echo "see README: each benchmark in bench/ prints its own figures"

clean:
	rm -rf $(VENV) .data *.egg-info
