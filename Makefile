# The two commands a newcomer needs: `make dev` (the API on http://127.0.0.1:9000) and
# `make test` (everything CI checks). Both install their own pinned tooling into ./.venv first.
SHELL := bash
VENV := .venv
PYTHON ?= python3
export SAM_CLI_TELEMETRY := 0

.PHONY: dev test tools merchant build bench mutants clean

## tools: pinned cargo-lambda, aws-sam-cli, actionlint and openapi-spec-validator in ./.venv; DynamoDB Local in ./.tools
tools: $(VENV)/.installed
	bash infra/dynamodb-local.sh install
$(VENV)/.installed: infra/requirements.txt infra/constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --disable-pip-version-check -r infra/requirements.txt -c infra/constraints.txt
	touch $@

## dev: DynamoDB Local, the table, a dev merchant, and the API on 127.0.0.1:9000 (PROCESSOR=stripe: through localstripe)
dev: tools
	bash infra/dev.sh

## test: fmt, clippy, unit, handler and fault tests against DynamoDB Local, sam validate --lint, actionlint
test: tools
	bash infra/test.sh

## merchant: NAME=acme creates a merchant on the running local stack and prints its key
merchant: tools
	bash infra/admin.sh merchants create --name "$(or $(NAME),$(error set NAME=...))"

## build: every function's arm64 artifact in one cargo invocation (build/lambda/*, the template's CodeUris); fails if a zip is over its budget
build: tools
	bash infra/build.sh

## bench: cold start, latency, CPU, memory and zip size vs a Rust floor and a Python peer
bench: tools
	bash infra/bench.sh

## mutants: mutation testing of the payments domain with its unit tests (scores: bench/MUTANTS.md)
mutants:
	bash infra/mutants.sh

clean:
	rm -rf .aws-sam .dev build
