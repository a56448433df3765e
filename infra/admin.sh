#!/usr/bin/env bash
# Runs the admin CLI against the local stack: `bash infra/admin.sh merchants create --name acme`.
set -euo pipefail
cd "$(dirname "$0")/.."
source infra/local-env.sh
cargo run --quiet -p payments-admin -- "$@"
