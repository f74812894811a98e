# The two commands of the README: `make run` (the whole dev stack) and `make test` (everything
# the suite needs, then lint, types and tests). Both create or update .venv themselves.

PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
RUNTIME_STAMP := $(VENV)/.runtime-installed
TEST_STAMP := $(VENV)/.test-installed
NODE_STAMP := node_modules/.installed

.PHONY: run test lint typecheck pytest chromium bench drills clean

$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip

$(RUNTIME_STAMP): pyproject.toml | $(PY)
	$(PY) -m pip install --quiet -e .
	touch $@

$(TEST_STAMP): pyproject.toml | $(PY)
	$(PY) -m pip install --quiet -e ".[test]"
	touch $@ $(RUNTIME_STAMP)

$(NODE_STAMP): package.json package-lock.json
	npm ci --no-audit --no-fund --loglevel=error
	touch $@

run: $(RUNTIME_STAMP) $(NODE_STAMP)
	$(PY) manage.py devstack

test: $(TEST_STAMP) $(NODE_STAMP) chromium lint typecheck pytest

lint: $(TEST_STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

typecheck: $(TEST_STAMP)
	$(VENV)/bin/mypy .

pytest: $(TEST_STAMP) $(NODE_STAMP) chromium
	$(PY) -m pytest $(PYTEST_ARGS)

# Benchmarks beside their baselines, same run; rewrites docs/benchmarks.md. They run on
# PostgreSQL (BENCH_DATABASE_URL, created when missing: the dashboard's is measured there) and
# the local Redis (BENCH_REDIS_URL, its own database number). The defaults take a few minutes;
# the full-size runs are set in the environment: BENCH_REPLAY_DAYS=30 (a month of bars, about
# an hour), BENCH_HEALTH_FILLS=1000000 (Router Health over a million fills), BENCH_WS_CLIENTS,
# BENCH_WS_SECONDS, BENCH_LOAD_USERS and BENCH_LOAD_SECONDS.
BENCH_DATABASE_URL ?= postgres://postgres@127.0.0.1:5432/tradingsite_bench
BENCH_REDIS_URL ?= redis://127.0.0.1:6379/13
bench: $(TEST_STAMP)
	DATABASE_URL=$(BENCH_DATABASE_URL) REDIS_URL=$(BENCH_REDIS_URL) $(PY) -m tests.benchmarks.run

# Fault drills at full size, each on its own redis-server (free port) and PostgreSQL database
# (<base>_drill_<name> on DRILL_DATABASE_URL's server); rewrites docs/reliability.md. CI runs the
# same drills at minimum sizes inside the test suite (tests/drills/test_drills.py).
DRILL_DATABASE_URL ?= postgres://postgres@127.0.0.1:5432/tradingsite
drills: $(TEST_STAMP) $(NODE_STAMP)
	DRILL_DATABASE_URL=$(DRILL_DATABASE_URL) $(PY) -m tests.drills.run

# The browser tests use Chromium from CHROMIUM_PATH or PATH, else Playwright's own download;
# when none can be had the run stops here and says so (a browser test is never skipped).
chromium: $(TEST_STAMP)
	@if [ -n "$$CHROMIUM_PATH" ] || command -v chromium >/dev/null 2>&1 || command -v chromium-browser >/dev/null 2>&1; then \
		true; \
	else \
		$(VENV)/bin/playwright install chromium || { \
			echo "Chromium is missing: install it (Debian: apt-get install chromium) or set CHROMIUM_PATH" >&2; exit 1; }; \
	fi

clean:
	rm -rf $(VENV) node_modules var
