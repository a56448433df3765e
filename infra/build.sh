#!/usr/bin/env bash
# `make build`: the deployable artifacts exactly as `sam deploy` ships them (arm64, built by
# cargo-lambda through SAM), zipped as sam deploy zips them, each checked against its size budget
# (infra/zip-budgets.json): a function that outgrows its budget fails the build, and so CI.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$PWD/.venv/bin:$PATH"
export SAM_CLI_TELEMETRY=0
rustup target add aarch64-unknown-linux-gnu >/dev/null 2>&1 || true
sam build
python3 infra/zip_sizes.py .aws-sam/build
