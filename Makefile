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

.PHONY: help setup synth test lint bench explore clean integ integ-snapshots

help:
	@echo "make synth   set up, then synthesize every stack into cdk.out with the cdk-nag packs"
	@echo "make test    set up, then run lint, type checks and the whole test suite"
	@echo "make bench   run the benchmarks and rewrite docs/benchmarks.md"
	@echo "make integ   deploy each integration test (tests/integ) to the AWS account of your credentials,"
	@echo "             run its assertions, destroy it (docs/deploy.md); make integ-snapshots rewrites snapshots"
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

# The assistant's browser test drives the OS's chromium through Playwright (never `playwright install`,
# which downloads its own browser). Debian's package; the tests run as root here and in CI.
CHROMIUM := /usr/bin/chromium
$(CHROMIUM):
	apt-get install -y --no-install-recommends chromium || { apt-get update && apt-get install -y --no-install-recommends chromium; }

setup: $(VENV)/.installed node_modules/.installed $(TOOLS)/.installed $(CHROMIUM)

synth: setup
	$(CDK) synth --quiet --no-notices --no-version-reporting
	@echo "Synthesized: $$(ls cdk.out/*.template.json | wc -l) templates in cdk.out (cdk-nag: no unacknowledged findings)"

lint: setup
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/lint-imports --no-cache
	$(BIN)/mypy ai_factory stacks features benchmarks lambdas/gateway/aif_gateway lambdas/canary/aif_canary lambdas/connector/aif_connector lambdas/feature_key_provisioner lambdas/invocation_logging_handler lambdas/assistant/aif_assistant lambdas/prompt_publisher lambdas/online_eval/aif_online tools app.py

test: setup lint
	CDK_VALIDATION=false $(BIN)/pytest -n 2 -q

# The integration tests in the CDK convention (tests/integ/integ_*.py, IntegTest cases). `make test`
# verifies their snapshots offline; this deploys each case with the CDK CLI (the assertion stack's
# custom resources run the assertions during the deploy and fail it when one fails), then destroys it.
INTEG_CASES ?= $(wildcard tests/integ/integ_*.py)
integ: setup
	@$(BIN)/python -c "import boto3, sys; sys.exit(0 if boto3.Session().get_credentials() else 1)" || { \
		echo "make integ: no AWS credentials found (environment, profile or SSO): nothing was deployed."; \
		echo "Set AWS_PROFILE (or keys) for a sandbox account, run 'ai-factory preflight', then make integ."; \
		exit 1; }
	@for case in $(INTEG_CASES); do \
		name=$$(basename $$case .py); \
		echo "== $$name: deploy and assert"; \
		$(CDK) deploy --app "$(BIN)/python $$case" --output cdk.out.integ/$$name --all \
			--require-approval never --no-notices --no-version-reporting; status=$$?; \
		echo "== $$name: destroy"; \
		$(CDK) destroy --app "$(BIN)/python $$case" --output cdk.out.integ/$$name --all --force --no-notices \
			|| status=1; \
		[ $$status -eq 0 ] || { echo "make integ: $$name failed"; exit 1; }; \
	done

integ-snapshots: setup
	$(BIN)/python tests/integ/snapshots.py --update

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
