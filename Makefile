# journeyman: `make test` sets everything up from nothing and runs the whole suite.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
PEERS_VENV ?= .venv-peers
PEERS_STAMP := $(PEERS_VENV)/.installed

.PHONY: run test services lint typecheck unit integration browser fuzz bench bench-peers clean sdks

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $(STAMP)

# Serve the example workspace on SQLite, with the built-in mail catcher for email.
run: $(STAMP)
	$(BIN)/journeyman serve --workspace examples --db sqlite:///.journeyman/journeyman.db --catcher

test: services lint typecheck unit integration browser

# PostgreSQL, NATS and Chromium for the suite, started or installed when missing.
services:
	bash .ci/services

lint: $(STAMP)
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/ruff format --check src tests benchmarks

typecheck: $(STAMP)
	$(BIN)/mypy

# The three layers of the suite (docs/testing.md): in-process tests of the code alone;
# tests with real servers (PostgreSQL, NATS, SMTP and HTTP sinks) and journeyman processes;
# the console in a headless Chromium.
unit: $(STAMP)
	$(BIN)/pytest tests/unit

# The Node analytics libraries tests/integration/test_sdks.py sends with, and the browser
# ones (with esbuild, which bundles them) tests/browser loads in a page, as the lock file
# says (their install scripts only build optional native speed-ups or check esbuild's
# binary, which npm installs as a package of its own, so they are not run).
SDK_STAMP := tests/sdk/node_modules/.installed
$(SDK_STAMP): tests/sdk/package.json tests/sdk/package-lock.json
	cd tests/sdk && npm ci --ignore-scripts --no-audit --no-fund --silent
	touch $(SDK_STAMP)

sdks: $(SDK_STAMP)

# Test files not yet sorted into a layer (tests/test_*.py) run with this one.
integration: $(STAMP) services $(SDK_STAMP)
	$(BIN)/pytest tests/integration $(wildcard tests/test_*.py)

browser: $(STAMP) services $(SDK_STAMP)
	$(BIN)/pytest tests/browser

# The fuzz tests with many more cases than the suite runs, fresh ones each time; a failure
# prints how to reproduce it (docs/testing.md).
FUZZ_TESTS = $(wildcard tests/*/test_fuzz_*.py)

fuzz: $(STAMP) services
	JOURNEYMAN_FUZZ_EXAMPLES=500 $(BIN)/pytest -q $(FUZZ_TESTS)

bench: $(STAMP)
	$(BIN)/python -m pip install --quiet -e '.[bench]'
	$(BIN)/python benchmarks/run.py

# 100,000 profiles leaving a days_since segment at the same instant, on SQLite: seconds from
# that instant to the last exit recorded (the timer lag of profile clocks). EXITS_COUNT sets
# how many profiles; the result is printed, for benchmarks/results.md.
EXITS_COUNT ?= 100000
.PHONY: bench-segment-exits
bench-segment-exits: $(STAMP)
	$(BIN)/python benchmarks/bench_segment_exits.py $(EXITS_COUNT)

# SIGKILL storms under load, on SQLite and on PostgreSQL + NATS with workers (which need
# `make services`): what the kills lost or sent twice, in benchmarks/chaos-results.md.
# CHAOS_MODE (sqlite, bus, both), CHAOS_KILLS per mode, CHAOS_DURATION (seconds of load
# per mode); CHAOS_ARGS for the rest (python benchmarks/chaos.py --help).
CHAOS_MODE ?= both
CHAOS_KILLS ?= 10
CHAOS_DURATION ?= 60
.PHONY: chaos
chaos: $(STAMP)
	$(BIN)/python benchmarks/chaos.py --mode $(CHAOS_MODE) --kills $(CHAOS_KILLS) \
		--duration $(CHAOS_DURATION) $(CHAOS_ARGS)

# The peers (DBOS, Temporal) live in a virtualenv of their own, so that journeyman's
# dependencies stay what pyproject.toml says.
$(PEERS_STAMP): pyproject.toml benchmarks/peers/requirements.txt
	test -x $(PEERS_VENV)/bin/python || $(PYTHON) -m venv $(PEERS_VENV)
	$(PEERS_VENV)/bin/python -m pip install --quiet --upgrade pip
	$(PEERS_VENV)/bin/python -m pip install --quiet -e . -r benchmarks/peers/requirements.txt
	touch $(PEERS_STAMP)

# journeyman side by side with the same journey on DBOS and Temporal: BENCHMARKS.md.
# JOURNEYMAN_BENCH_QUICK=1 for a short run that writes to artifacts/peers-quick/.
bench-peers: $(PEERS_STAMP)
	$(PEERS_VENV)/bin/python benchmarks/peers/run.py

clean:
	rm -rf $(VENV) $(PEERS_VENV) .mypy_cache .pytest_cache .ruff_cache tests/sdk/node_modules
