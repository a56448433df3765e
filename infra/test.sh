#!/usr/bin/env bash
# `make test`: everything CI checks, in the order that fails fastest.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$PWD/.venv/bin:$PATH"
export SAM_CLI_TELEMETRY=0

echo "==> cargo fmt --check"
cargo fmt --all -- --check
echo "==> cargo clippy -D warnings"
cargo clippy --workspace --all-targets --quiet -- -D warnings

# The handler tests need a DynamoDB-compatible server; their helper starts one itself when none
# listens, but here we own its life so that no server outlives the run.
port="${PAYMENTS_TEST_DYNAMODB_PORT:-8765}"
export PAYMENTS_TEST_DYNAMODB_ADDR="127.0.0.1:$port"
source infra/local-env.sh
start_local_dynamodb "$port" .dev/dynamodb-test.log

echo "==> cargo test (unit, handler, contract-file tests)"
cargo test --workspace
echo "==> end-to-end: the make dev stack on its own ports, over HTTP (infra/e2e.sh)"
bash infra/e2e.sh
echo "==> sam validate --lint"
sam validate --lint
echo "==> openapi.yaml is valid OpenAPI 3.1"
openapi-spec-validator openapi.yaml
echo "==> actionlint"
actionlint
echo "==> all checks passed"
