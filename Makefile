# The README's two commands: `make run` and `make test`. Each creates .venv on first use.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
ARGS   ?= --demo
BENCH_ARGS ?= --events 2000 --workers 1
PYTEST_ARGS ?=

.PHONY: run test lint fmt typecheck bench bench-smoke chaos large clean browser

# Browser tests drive Debian's chromium through chromedriver. Installed here when missing and
# possible (root with apt); without them the browser tests skip and say why.
browser:
	@command -v chromedriver >/dev/null 2>&1 || { [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1 \
	  && { DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium chromium-driver >/dev/null 2>&1 \
	       || { apt-get update -q >/dev/null 2>&1 \
	            && DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium chromium-driver >/dev/null 2>&1; }; } \
	  || echo "chromium/chromedriver not installed: browser tests will be skipped"; }

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
	$(BIN)/ruff check hub channels preferences tests
	$(BIN)/ruff format --check hub channels preferences tests

fmt: $(STAMP)
	$(BIN)/ruff format hub channels preferences tests
	$(BIN)/ruff check --fix hub channels preferences tests

typecheck: $(STAMP)
	$(BIN)/mypy

$(VENV)/.bench: $(STAMP)
	$(BIN)/python -m pip install --quiet -e '.[dev,bench]'
	touch $(VENV)/.bench

bench: $(VENV)/.bench
	$(BIN)/hub bench $(BENCH_ARGS)

# Every bench scenario, small, checking itself (tests/test_bench.py): keeps them working.
bench-smoke: $(VENV)/.bench
	$(BIN)/pytest -m bench $(PYTEST_ARGS)

# The short chaos runs (tests/test_chaos.py); `hub chaos all --events 1000` is the long one.
chaos: $(STAMP)
	$(BIN)/pytest -m chaos $(PYTEST_ARGS)

# Data-volume runs (a 100,000-row customer import with bounded memory), in CI.
large: $(STAMP)
	$(BIN)/pytest -m large $(PYTEST_ARGS)

clean:
	rm -rf $(VENV) var .pytest_cache .mypy_cache .ruff_cache
