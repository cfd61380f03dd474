# meterhub: the two commands are `make test` and `make demo`; both need only python3 (≥ 3.11).
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-$(shell cksum < pyproject.toml | cut -d' ' -f1)

.PHONY: test demo bench lint clean

# (Re)create the virtualenv and install the project with its test extras whenever
# pyproject.toml changes; otherwise this is a no-op.
$(STAMP): pyproject.toml
	$(PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 11) and "meterhub needs Python 3.11 or newer")'
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e '.[test]'
	rm -f $(VENV)/.installed-*
	touch $@

# Tests run in parallel on every core (pytest-xdist); a module's tests stay on one worker,
# so module fixtures (a fleet's minute, a live hub) are set up once. TEST_WORKERS=0: serial.
TEST_WORKERS ?= auto
test: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/pytest -n $(TEST_WORKERS) --dist loadscope

demo: $(STAMP)
	$(BIN)/python demo/run_demo.py

BENCH_STAMP := $(VENV)/.bench-$(shell cksum < pyproject.toml | cut -d' ' -f1)

$(BENCH_STAMP): $(STAMP)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e '.[test,bench]'
	rm -f $(VENV)/.bench-*
	touch $@

# Every benchmark at small sizes (about 8 minutes on 2 cores), FULL=1 for full sizes;
# rewrites bench/RESULTS.md and bench/plots/.
bench: $(BENCH_STAMP)
	$(BIN)/python -m bench.report $(if $(FULL),--full)

lint: $(STAMP)
	$(BIN)/ruff check .

clean:
	rm -rf $(VENV) demo-run bench/out .pytest_cache .hypothesis .ruff_cache
