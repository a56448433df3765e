#!/usr/bin/env bash
# `make test`: everything CI checks, in the order that fails fastest.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$PWD/.venv/bin:$PATH"
export SAM_CLI_TELEMETRY=0
# No incremental compilation: its data is what made target/ grow to tens of GB between runs
# (infra/ci-cache.sh), and a test run rebuilds what changed whole anyway.
export CARGO_INCREMENTAL=0

echo "==> cargo fmt --check"
cargo fmt --all -- --check
echo "==> cargo clippy -D warnings"
cargo clippy --workspace --all-targets --quiet -- -D warnings

# The handler tests need DynamoDB Local: this run starts its own (on a free port unless
# PAYMENTS_TEST_DYNAMODB_PORT names one; never a server left from before) and stops it when the
# run ends, however it ends; the tests delete the tables they make.
source infra/local-env.sh
export LOCAL_DYNAMODB_OWN=1
port="${PAYMENTS_TEST_DYNAMODB_PORT:-$(free_port)}"
export PAYMENTS_TEST_DYNAMODB_ADDR="127.0.0.1:$port"
start_local_dynamodb "$port" .dev/dynamodb-test.log

echo "==> the CI scripts' own tests (infra/tests)"
python -m pytest -p no:cacheprovider -q infra/tests
echo "==> cargo test (unit, handler, contract-file tests)"
cargo test --workspace
echo "==> end-to-end: the make dev stack on its own ports, over HTTP (infra/e2e.sh)"
bash infra/e2e.sh
echo "==> end-to-end with Processor=stripe: the same stack through localstripe (infra/e2e/stripe)"
E2E_PROCESSOR=stripe bash infra/e2e.sh
echo "==> sam validate --lint"
sam validate --lint
echo "==> openapi.yaml is valid OpenAPI 3.1"
openapi-spec-validator openapi.yaml
echo "==> actionlint"
actionlint
echo "==> all checks passed"
