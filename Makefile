# The two set-up commands in README.md are `make run` and `make test`; each
# creates .venv itself on a fresh machine, from the locks in locks/ (never
# from floating versions): `make lock` regenerates them from pyproject.toml.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
PG_URL ?= postgresql://postgres@127.0.0.1:5432/postgres
# Hash-checked installs from a lock; labledger itself without dependencies,
# built by the locked hatchling (no build isolation, so nothing floats there).
LOCKED  = pip install -q --require-hashes
SELF    = pip install -q --no-deps --no-build-isolation

.PHONY: run test test-long lint typecheck check bench faults catalog clean lock smoke-base

$(BIN)/.installed: pyproject.toml locks/tools.txt locks/dev.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/$(LOCKED) -r locks/tools.txt
	$(BIN)/$(LOCKED) -r locks/dev.txt
	$(BIN)/$(SELF) -e .
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

# `pip install labledger` with no extras, in a venv of its own, then every verb
# either works or exits 2 naming its extra (issue #12).
BASE_VENV ?= .venv-base
smoke-base:
	rm -rf $(BASE_VENV)
	$(PYTHON) -m venv $(BASE_VENV)
	$(BASE_VENV)/bin/$(LOCKED) -r locks/tools.txt
	$(BASE_VENV)/bin/$(LOCKED) -r locks/base.txt
	$(BASE_VENV)/bin/$(SELF) .
	$(BASE_VENV)/bin/python tests/smoke/base_install.py $(BASE_VENV)/bin/labledger

bench: $(BIN)/.installed
	$(BIN)/$(LOCKED) -r locks/bench.txt
	LABLEDGER_BENCH_PG_URL=$${LABLEDGER_BENCH_PG_URL-$(PG_URL)} $(BIN)/python benchmarks/perf_bench.py $(BENCH_ARGS)

clean:
	rm -rf $(VENV) $(BASE_VENV) .pytest_cache .mypy_cache .ruff_cache

catalog: $(BIN)/.installed
	$(BIN)/python -m labledger.events.catalog --write
	$(BIN)/python -m labledger.projections.catalog --write

# Regenerate every lock from pyproject.toml (run it to raise a version, then
# commit locks/). all.txt resolves every extra together; each narrower lock is
# resolved under it, so all of them agree on every shared version.
COMPILE = $(LOCKVENV)/bin/pip-compile -q --generate-hashes --allow-unsafe --strip-extras \
	--no-emit-index-url --no-emit-find-links --no-header
LOCKVENV ?= .venv-lock
EXTRA_SETS = base: postgres:postgres ml:ml plot:plot api:api notebook:notebook \
	dev:dev,postgres,ml,plot,api,notebook bench:dev,postgres,ml,plot,api,notebook,bench
lock:
	rm -rf $(LOCKVENV)
	$(PYTHON) -m venv $(LOCKVENV)
	$(LOCKVENV)/bin/$(LOCKED) -r locks/tools.txt
	$(COMPILE) -o locks/tools.txt locks/tools.in
	$(COMPILE) --all-extras -o locks/all.txt pyproject.toml
	for set in $(EXTRA_SETS); do \
		name=$${set%%:*}; extras=$${set#*:}; \
		flags=$$(echo "$$extras" | tr ',' '\n' | sed -n 's/^./--extra &/p' | tr '\n' ' '); \
		$(COMPILE) -c locks/all.txt $$flags -o locks/$$name.txt pyproject.toml || exit 1; \
	done
	rm -rf $(LOCKVENV)
