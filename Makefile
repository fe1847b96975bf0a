# The README's two commands: `make run` and `make test`. Each creates .venv on first use.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
ARGS   ?= --demo
BENCH_ARGS ?= --events 2000 --workers 1
PYTEST_ARGS ?=

.PHONY: run test lint fmt typecheck bench bench-smoke chaos large clean browser messages docs

# Browser tests drive Debian's chromium through chromedriver. Installed here when missing and
# possible (apt-get as root, or through passwordless sudo), then checked by running both. When
# they are still missing or do not run this says so loudly, with apt-get's last lines; with
# CI=true (or 1) it fails, since the browser tests then fail too; elsewhere they skip and say why.
BROWSER_PACKAGES := chromium chromium-driver

browser:
	@works() { chromium --version >/dev/null 2>&1 && chromedriver --version >/dev/null 2>&1; }; \
	works && exit 0; \
	log=$$(mktemp); why=""; \
	if ! command -v apt-get >/dev/null 2>&1; then why="no apt-get on this machine"; \
	elif [ "$$(id -u)" = 0 ]; then sudo=""; \
	elif command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then sudo="sudo -n"; \
	else why="not root and no passwordless sudo"; fi; \
	if [ -z "$$why" ]; then \
	  echo "browser: installing $(BROWSER_PACKAGES) with apt-get"; \
	  { $$sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -q $(BROWSER_PACKAGES) \
	    || { $$sudo apt-get update -q \
	         && $$sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -q $(BROWSER_PACKAGES); }; \
	  } >"$$log" 2>&1 || why="apt-get failed"; \
	  works && { rm -f "$$log"; echo "browser: $$(chromedriver --version 2>/dev/null | head -n 1)"; exit 0; }; \
	  [ -n "$$why" ] || why="apt-get succeeded, but chromium and chromedriver still do not run"; \
	fi; \
	{ echo; echo "********************************************************************************"; \
	  echo "browser: chromium/chromedriver are NOT installed: $$why."; \
	  for b in chromium chromedriver; do \
	    if command -v $$b >/dev/null 2>&1; then echo "  $$b: $$(command -v $$b): $$($$b --version 2>&1 | tail -n 1)"; \
	    else echo "  $$b: not on PATH"; fi; done; \
	  if [ -s "$$log" ]; then echo "  apt-get said (last lines):"; tail -n 15 "$$log" | sed 's/^/    /'; fi; \
	  echo "  Install them (as root) with: apt-get install $(BROWSER_PACKAGES)"; \
	  case "$${CI:-}" in [Tt][Rr][Uu][Ee]|1) echo "  CI is set: the browser tests would fail; stopping here.";; \
	    *) echo "  Without them tests/test_browser.py is SKIPPED (with CI=true it fails).";; esac; \
	  echo "********************************************************************************"; echo; \
	} >&2; \
	rm -f "$$log"; \
	case "$${CI:-}" in [Tt][Rr][Uu][Ee]|1) exit 1;; esac

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

run: $(STAMP)
	$(BIN)/hub dev $(ARGS)

test: $(STAMP) browser
	$(BIN)/pytest $(PYTEST_ARGS)

lint: $(STAMP)
	$(BIN)/ruff check hub channels preferences proofs tests
	$(BIN)/ruff format --check hub channels preferences proofs tests

fmt: $(STAMP)
	$(BIN)/ruff format hub channels preferences proofs tests
	$(BIN)/ruff check --fix hub channels preferences proofs tests

typecheck: $(STAMP)
	$(BIN)/mypy

# Every translatable string of templates/ into templates/locales/messages.pot, and each
# <lang>.po brought up to date with it (tests/test_i18n.py fails while one is stale).
messages: $(STAMP)
	$(BIN)/python -m hub.i18n extract

# docs/configuration.md is generated from the settings model (a test fails when it is stale).
docs: $(STAMP)
	$(BIN)/python -m hub.confdoc > docs/configuration.md

# The benchmarks and chaos runs are the checkout's proofs/ package (not in the wheel): the
# editable install below is what lets `hub bench` and `hub chaos` find them.
$(VENV)/.bench: $(STAMP)
	$(BIN)/python -m pip install --quiet -e '.[dev,bench]'
	touch $(VENV)/.bench

bench: $(VENV)/.bench
	$(BIN)/hub bench $(BENCH_ARGS)

# Every bench scenario, small, checking itself (tests/test_bench.py): keeps them working.
bench-smoke: $(VENV)/.bench
	$(BIN)/pytest -m bench $(PYTEST_ARGS)

# The short chaos runs (tests/test_chaos.py on proofs/chaos.py, tests/test_sentinel.py on proofs/chaos_failover.py);
# `hub chaos all --events 1000` is the long one.
chaos: $(STAMP)
	$(BIN)/pytest -m chaos $(PYTEST_ARGS)

# docs/first-attempt.md: a synthetic population delivered to with and without the hub's hints.
SIM_ARGS ?= --customers 500 --weeks 16 --warmup 12 --seed 1
.PHONY: simulate
simulate: $(VENV)/.bench
	mkdir -p var
	$(BIN)/hub simulate availability $(SIM_ARGS) --json var/simulate-availability.json

# Data-volume runs (a 100,000-row customer import with bounded memory), in CI.
large: $(STAMP)
	$(BIN)/pytest -m large $(PYTEST_ARGS)

clean:
	rm -rf $(VENV) var .pytest_cache .mypy_cache .ruff_cache
