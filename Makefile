# Two commands on a fresh machine: `make synth` and `make test`. Everything they need is installed
# into this folder (.venv for Python, node_modules for Node and the CDK CLI), pinned.
SHELL := /bin/bash
.DEFAULT_GOAL := help

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
# The repo's own Node (npm package `node`) and CDK CLI come first on PATH, for cdk and for jsii.
export PATH := $(CURDIR)/node_modules/.bin:$(CURDIR)/$(BIN):$(PATH)
export CDK_DISABLE_CLI_TELEMETRY := true
export JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION := 1
export MLFLOW_DISABLE_TELEMETRY := true
CDK := ./node_modules/.bin/cdk

.PHONY: help setup synth test lint bench explore clean

help:
	@echo "make synth   set up, then synthesize every stack into cdk.out with the cdk-nag packs"
	@echo "make test    set up, then run lint, type checks and the whole test suite"
	@echo "make bench   run the benchmarks and rewrite docs/benchmarks.md"
	@echo "make explore run the property-based tests ROUNDS times (default 5) with fresh random examples"

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

# Re-install only when the pins change.
$(VENV)/.installed: pyproject.toml constraints.txt | $(BIN)/python
	$(BIN)/pip install --quiet --disable-pip-version-check -c constraints.txt -e '.[dev]'
	touch $@

# The template scanners (checkov, cfn-lint) in a venv of their own: checkov pins boto3 and pydantic
# versions that clash with the project's.
TOOLS := .venv-tools
$(TOOLS)/.installed: requirements-tools.txt
	$(PYTHON) -m venv $(TOOLS)
	$(TOOLS)/bin/pip install --quiet --disable-pip-version-check -r requirements-tools.txt
	touch $@

node_modules/.installed: package.json package-lock.json
	npm ci --no-audit --no-fund --loglevel=error
	touch $@

setup: $(VENV)/.installed node_modules/.installed $(TOOLS)/.installed

synth: setup
	$(CDK) synth --quiet --no-notices --no-version-reporting
	@echo "Synthesized: $$(ls cdk.out/*.template.json | wc -l) templates in cdk.out (cdk-nag: no unacknowledged findings)"

lint: setup
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy ai_factory stacks features benchmarks lambdas/gateway/aif_gateway lambdas/canary/aif_canary lambdas/connector/aif_connector app.py

test: setup lint
	CDK_VALIDATION=false $(BIN)/pytest -n 2 -q

ROUNDS ?= 5
# `make test` is deterministic (tests/conftest.py); this looks for new failing examples. Keep what it
# finds as an @example in the test, then fix the code.
explore: setup
	for round in $$(seq $(ROUNDS)); do \
		CDK_VALIDATION=false $(BIN)/pytest -n 2 -q tests/unit --hypothesis-profile=explore -x || exit 1; \
	done

bench: setup
	$(BIN)/python benchmarks/run_all.py

clean:
	rm -rf cdk.out cdk.out.integ .pytest_cache .mypy_cache .ruff_cache
