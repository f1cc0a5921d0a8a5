# The two commands a fresh machine needs: `make demo` (the main job) and `make test` (the suite).
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: install test-deps demo serve test lint bench-pacing clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test,bench]'
	touch $(STAMP)

# The desktop's softphone library (SIP.js), pinned by package-lock.json, served from node_modules.
node_modules/.package-lock.json: package.json package-lock.json
	scripts/install-node
	npm ci --no-audit --no-fund
	touch $@

install: $(STAMP) node_modules/.package-lock.json

# System packages the tests use (Chromium, promtool, libfaketime, node); Asterisk is provisioned by
# its fixture.
test-deps:
	scripts/install-test-deps

# The self-contained demo: embedded SQLite, simulated PBX over real AMI, ten agents, a report.
# e.g. make demo DEMO_ARGS="--duration 30 --headless"
demo: install
	$(BIN)/dialer demo $(DEMO_ARGS)

serve: install
	$(BIN)/dialer serve

test: install test-deps
	$(BIN)/pytest -ra $(PYTEST_ARGS)

lint: install
	$(BIN)/ruff check .
	$(BIN)/mypy

bench-pacing: install
	$(BIN)/python -m benchmarks.pacing --json benchmarks/results/pacing.json

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache .mypy_cache .ruff_cache
