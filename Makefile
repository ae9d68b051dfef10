# Two commands on a fresh machine: `make demo` and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test lint typecheck pytest reactors bench bench-smoke docs clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

$(STAMP): $(BIN)/python pyproject.toml
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test,bench,docs]'
	touch $(STAMP)

demo: $(STAMP)
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

bench-smoke: $(STAMP)
	$(BIN)/python benchmarks/bench_core.py --smoke
	$(BIN)/python benchmarks/bench_threads.py --smoke
	$(BIN)/python benchmarks/bench_primitives.py --smoke
	$(BIN)/python benchmarks/bench_echo.py --smoke
	$(BIN)/python benchmarks/bench_memory.py --smoke
	$(BIN)/python benchmarks/bench_wsgi.py --smoke
	$(BIN)/python benchmarks/bench_green_socket.py --smoke
	$(BIN)/python benchmarks/bench_requests.py --smoke
	$(BIN)/python benchmarks/bench_redis.py --smoke

test: lint typecheck docs pytest reactors bench-smoke

bench: $(STAMP)
	$(BIN)/python benchmarks/bench_core.py
	$(BIN)/python benchmarks/bench_threads.py
	$(BIN)/python benchmarks/bench_primitives.py
	$(BIN)/python benchmarks/bench_echo.py
	$(BIN)/python benchmarks/bench_memory.py
	$(BIN)/python benchmarks/bench_wsgi.py
	$(BIN)/python benchmarks/bench_green_socket.py
	$(BIN)/python benchmarks/bench_requests.py
	$(BIN)/python benchmarks/bench_redis.py

docs: $(STAMP)
	$(BIN)/mkdocs build --strict

clean:
	rm -rf $(VENV) site build dist
