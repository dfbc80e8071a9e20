# The two set-up commands in README.md are `make run` and `make test`; each
# creates .venv itself on a fresh machine.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
PG_URL ?= postgresql://postgres@127.0.0.1:5432/postgres

.PHONY: run test test-long lint typecheck check bench faults catalog clean

$(BIN)/.installed: pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -c constraints.txt -e ".[dev,postgres,ml,plot,api]"
	touch $@

run: $(BIN)/.installed
	$(BIN)/labledger lab

test: $(BIN)/.installed
	LABLEDGER_TEST_PG_URL=$${LABLEDGER_TEST_PG_URL-$(PG_URL)} $(BIN)/pytest -q -n 2

# The fault-injection suite alone (it also runs inside `make test`); the long
# profile is `LABLEDGER_TEST_PROFILE=long make faults` (docs/reliability.md).
faults: $(BIN)/.installed
	LABLEDGER_TEST_PG_URL=$${LABLEDGER_TEST_PG_URL-$(PG_URL)} $(BIN)/pytest -q -rA tests/faults

# The thorough profile: 5x the examples, more kills (several minutes more).
test-long: $(BIN)/.installed
	LABLEDGER_TEST_PROFILE=long LABLEDGER_TEST_PG_URL=$${LABLEDGER_TEST_PG_URL-$(PG_URL)} \
		$(BIN)/pytest -q -n 2

lint: $(BIN)/.installed
	$(BIN)/ruff check src tests benchmarks migrations
	$(BIN)/ruff format --check src tests benchmarks migrations

typecheck: $(BIN)/.installed
	$(BIN)/mypy

check: lint typecheck test

bench: $(BIN)/.installed
	$(BIN)/pip install -q -c constraints.txt -e ".[bench]"
	LABLEDGER_BENCH_PG_URL=$${LABLEDGER_BENCH_PG_URL-$(PG_URL)} $(BIN)/python benchmarks/perf_bench.py $(BENCH_ARGS)

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache

catalog: $(BIN)/.installed
	$(BIN)/python -m labledger.events.catalog --write
	$(BIN)/python -m labledger.projections.catalog --write
