# Two commands on a fresh machine: `make demo` and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test lint typecheck pytest reactors bench bench-smoke docs clean services package

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

$(STAMP): $(BIN)/python pyproject.toml
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test,bench,docs]'
	$(MAKE) --no-print-directory services
	touch $(STAMP)

# What the real-library tests need from the system: Debian's redis-server (the Redis tests start
# one) and libpq (psycopg's pure-Python build loads it; PostgreSQL itself comes from pgserver);
# wrk, the HTTP load generator of benchmarks/bench_wsgi_wrk.py; valgrind, whose callgrind counts
# instructions for benchmarks/bench_wsgi_cost.py; curl (tests/web/test_real_apps.py
# drives the served Flask and Django apps with it too).
# Installed with apt-get when missing and apt-get is there (through sudo unless root); otherwise
# this says how, and those tests fail with the same advice.
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
services:
	@missing=""; \
	command -v redis-server >/dev/null 2>&1 || test -x /usr/sbin/redis-server \
		|| missing="$$missing redis-server"; \
	command -v wrk >/dev/null 2>&1 || missing="$$missing wrk"; \
	command -v valgrind >/dev/null 2>&1 || missing="$$missing valgrind"; \
	$(BIN)/python -c "import psycopg" >/dev/null 2>&1 || missing="$$missing libpq5"; \
	command -v curl >/dev/null 2>&1 || missing="$$missing curl"; \
	if [ -z "$$missing" ]; then exit 0; fi; \
	if command -v apt-get >/dev/null 2>&1; then \
		echo "installing$$missing with apt-get"; \
		$(SUDO) apt-get update -qq && \
		DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq $$missing >/dev/null \
		|| echo "could not install$$missing: install it yourself (the tests that need it fail)"; \
	else \
		echo "missing:$$missing. Install it (Debian/Ubuntu: apt-get install$$missing;" \
			"macOS: brew install redis libpq wrk): the tests that need it fail until then"; \
	fi

# The demo needs txgreen and its two dependencies only (not the test, benchmark or docs tools).
DEMO_STAMP := $(VENV)/.installed-demo
$(DEMO_STAMP): $(BIN)/python pyproject.toml
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e .
	touch $(DEMO_STAMP)

demo: $(DEMO_STAMP)
	$(BIN)/python examples/demo.py

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: $(STAMP)
	$(BIN)/mypy

# The whole suite under the default reactor, then the reactor-sensitive tests under every
# other reactor txgreen supports.
pytest: $(STAMP)
	$(BIN)/python -m pytest -q

reactors: $(STAMP)
	for r in poll select asyncio; do \
		$(BIN)/python -m pytest -q --txgreen-reactor=$$r -m "not single_reactor" || exit 1; \
	done

# The benchmarks that no test runs (tests/test_bench_*.py run the others' smoke passes and check
# their reports).
bench-smoke: $(STAMP)
	$(BIN)/python benchmarks/bench_core.py --smoke
	$(BIN)/python benchmarks/bench_threads.py --smoke
	$(BIN)/python benchmarks/bench_wsgi.py --smoke

# The package as users get it: sdist and wheel built, the wheel installed without extras into
# fresh environments (every CPython >= 3.10 found, and the lowest pinned versions), a program run.
package: $(STAMP)
	$(BIN)/python .ci/check_package.py

test: lint typecheck docs package pytest reactors bench-smoke

bench: $(STAMP)
	$(BIN)/python benchmarks/bench_core.py
	$(BIN)/python benchmarks/bench_threads.py
	$(BIN)/python benchmarks/bench_primitives.py
	$(BIN)/python benchmarks/bench_echo.py
	$(BIN)/python benchmarks/bench_memory.py
	$(BIN)/python benchmarks/bench_wsgi.py
	$(BIN)/python benchmarks/bench_wsgi_wrk.py
	$(BIN)/python benchmarks/bench_wsgi_cost.py
	$(BIN)/python benchmarks/bench_green_socket.py
	$(BIN)/python benchmarks/bench_requests.py
	$(BIN)/python benchmarks/bench_redis.py
	$(BIN)/python benchmarks/bench_supervision.py

docs: $(STAMP)
	$(BIN)/mkdocs build --strict

clean:
	rm -rf $(VENV) site build dist
