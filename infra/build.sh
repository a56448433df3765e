#!/usr/bin/env bash
# `make build`: every function's deployable arm64 artifact from ONE cargo invocation, then each
# zipped as `sam deploy` zips it and checked against its size budget (infra/zip-budgets.json): a
# function that outgrows its budget fails the build, and so CI.
#
# Why one invocation: each release binary's fat-LTO link re-optimises the whole dependency graph
# on one core (~40-50 s here). SAM's `rust-cargolambda` build method runs `cargo lambda build`
# once per function, one after another (17.5 min cold for 21 functions); one `cargo lambda build`
# over every function package resolves features once, compiles every dependency once and runs
# the links in parallel (one per core). SAM then builds nothing: each function's `CodeUri` in
# template.yaml is its prebuilt folder, build/lambda/<package>/ (holding `bootstrap`), and
# `sam deploy` zips and uploads those folders as they are. No `sam build` is run (a stale
# .aws-sam/build/template.yaml would be deployed in preference to template.yaml, so it is
# removed here).
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$PWD/.venv/bin:$PATH"
export SAM_CLI_TELEMETRY=0
rustup target add aarch64-unknown-linux-gnu >/dev/null 2>&1 || true

lambda_dir=build/lambda
# The packages to build are the ones template.yaml deploys (CodeUri: build/lambda/<package>).
mapfile -t packages < <(python3 infra/zip_sizes.py --packages)
args=(); for p in "${packages[@]}"; do args+=(-p "$p"); done

rm -rf .aws-sam/build "$lambda_dir"
start=$SECONDS
echo "==> cargo lambda build --release --arm64: ${#packages[@]} functions in one invocation"
cargo lambda build --release --arm64 --lambda-dir "$lambda_dir" "${args[@]}"
echo "==> built in $((SECONDS - start)) s"
python3 infra/zip_sizes.py
