#!/usr/bin/env bash
# `make bench`: builds the release binaries (native, to run here) and the arm64 zips (to size),
# starts a local DynamoDB of its own, and runs the benchmark (bench/src/main.rs), which prints
# the table and writes bench/RESULTS.md. Timing lives here, never in `make test`.
set -euo pipefail
cd "$(dirname "$0")/.."
source infra/local-env.sh
pip install --quiet --disable-pip-version-check -r infra/bench-requirements.txt

functions=(health create-payment get-payment list-payments list-events relay-webhook-events retry-webhook-deliveries)
packages=(); for f in "${functions[@]}"; do packages+=(-p "$f"); done

echo "==> release build (native) of the functions and the no-op floor"
cargo build --release --quiet "${packages[@]}" -p bench-noop -p payments-bench
echo "==> arm64 zips (cargo lambda build --release --arm64 --output-format zip)"
rustup target add aarch64-unknown-linux-gnu >/dev/null 2>&1 || true
cargo lambda build --release --arm64 --output-format zip "${packages[@]}" >/dev/null

target_dir=$(cargo metadata --format-version 1 --no-deps | python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')

port="${BENCH_DYNAMODB_PORT:-8766}"
export PAYMENTS_TEST_DYNAMODB_ADDR="127.0.0.1:$port"
start_local_dynamodb "$port" .dev/dynamodb-bench.log

echo "==> benchmark"
"$target_dir/release/payments-bench" "$target_dir/release" "$target_dir/lambda" "$PWD/.venv/bin/python" bench/RESULTS.md

echo "==> the SDK's share of one DynamoDB call (bench/examples/sdk_overhead.rs; see bench/RESULTS.md)"
cargo run --release --quiet -p payments-bench --example sdk_overhead
