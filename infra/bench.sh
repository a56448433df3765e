#!/usr/bin/env bash
# `make bench`: builds the release binaries (native, to run here) and the arm64 zips (to size),
# starts a local DynamoDB of its own, and runs the benchmark (bench/src/main.rs), which prints
# the table and writes bench/RESULTS.md. Timing lives here, never in `make test`.
set -euo pipefail
cd "$(dirname "$0")/.."
source infra/local-env.sh
pip install --quiet --disable-pip-version-check -r infra/bench-requirements.txt

# Every deployed function (the ones template.yaml names): a few are also invoked, the rest are
# measured for init (bench/src/main.rs, INIT_ONLY).
mapfile -t functions < <(python3 infra/zip_sizes.py --packages)
packages=(); for f in "${functions[@]}"; do packages+=(-p "$f"); done

# The init instructions are counted by callgrind (valgrind, from Debian's packages).
if ! command -v valgrind >/dev/null; then
  echo "==> installing valgrind (apt-get)"
  apt-get update -qq && apt-get install -y -qq valgrind >/dev/null
fi

# The same [profile.release] as the zips (Cargo.toml names every setting cargo-lambda would
# otherwise add, panic = "abort" among them), native, so that they run here.
echo "==> release build (native) of the functions and the no-op floor"
cargo build --release --quiet "${packages[@]}" -p bench-noop -p payments-bench
echo "==> the arm64 artifacts and their zips (make build: every function, one invocation)"
bash infra/build.sh >/dev/null

target_dir=$(cargo metadata --format-version 1 --no-deps | python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')

# Its own DynamoDB Local, never one left from before (tables of other runs would slow it).
export LOCAL_DYNAMODB_OWN=1
port="${BENCH_DYNAMODB_PORT:-$(free_port)}"
export PAYMENTS_TEST_DYNAMODB_ADDR="127.0.0.1:$port"
start_local_dynamodb "$port" .dev/dynamodb-bench.log

echo "==> benchmark"
"$target_dir/release/payments-bench" "$target_dir/release" build/zips "$PWD/.venv/bin/python" bench/RESULTS.md

echo "==> the SDK's share of one DynamoDB call (bench/examples/sdk_overhead.rs; see bench/RESULTS.md)"
cargo run --release --quiet -p payments-bench --example sdk_overhead

echo "==> data migration throughput and the 10-million-item estimate (bench/examples/migration_throughput.rs)"
cargo run --release --quiet -p payments-bench --example migration_throughput
