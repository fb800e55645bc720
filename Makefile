# The two commands (README): `make run` and `make test`.  Both set up .venv
# from nothing but python3 (3.11+).
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run test lint typecheck setup clean bench

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[test]'
	touch $(STAMP)

setup: $(STAMP)

run: $(STAMP)
	$(BIN)/smtpbench run profiles/smoke.toml

lint: $(STAMP)
	$(BIN)/ruff check smtpbench tests benchmarks
	$(BIN)/ruff format --check smtpbench tests benchmarks

typecheck: $(STAMP)
	$(BIN)/mypy

test: $(STAMP) lint typecheck
	$(BIN)/python -m pytest tests

bench: $(STAMP)
	$(BIN)/python benchmarks/bench_vs_smtp_source.py

clean:
	rm -rf $(VENV) build *.egg-info
