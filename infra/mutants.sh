#!/usr/bin/env bash
# Mutation testing of the code where a silent bug moves money or breaks a guarantee
# (bench/MUTANTS.md has the scores, the run times and the mutants left alive, each with why).
#
#   bash infra/mutants.sh                 # `make mutants`: every mutant of the modules below
#   bash infra/mutants.sh --in-diff BASE  # CI: only the mutants on lines changed since BASE
#
# What is mutated, and by which tests: the payments domain (shared/src/domain/: the status
# machine, the money rules, the typed values) by the `shared` crate's unit tests
# (`cargo test -p shared --lib`). They are the tests that state those rules, they need no
# DynamoDB, and a mutant costs one rebuild of `shared` and ~1 s of tests, so every mutant of the
# domain fits in minutes. lifecycle.rs, idempotency.rs and the store's capture/refund paths
# are checked by the handler and system tests against DynamoDB Local, at minutes per mutant:
# not in this run yet (bench/MUTANTS.md, "Not covered").
#
# In CI (--in-diff) a missed mutant fails the run. The work is bounded: when the change has more
# than MUTANTS_MAX (default 40) mutants, a deterministic share of them is tested (cargo
# mutants' --shard 0/k with round-robin sharding, k = ceil(n / MUTANTS_MAX)), and the run says
# so; `make mutants` tests them all. Timeouts (a mutant that loops) count as caught.
set -euo pipefail
cd "$(dirname "$0")/.."

version=27.1.0
root="$PWD/.tools/cargo-mutants-$version"
if [[ ! -x "$root/bin/cargo-mutants" ]]; then
  echo "==> installing cargo-mutants $version into .tools/"
  # Its own build folder: the install must not touch the workspace's.
  env -u CARGO_TARGET_DIR cargo install --quiet --locked cargo-mutants --version "$version" --root "$root"
fi
export PATH="$root/bin:$PATH"
export CARGO_INCREMENTAL=0
# Mutated copies of the tree build in a folder of their own, so that the workspace's (and CI's
# cached) builds are never replaced by builds of a mutant.
export CARGO_TARGET_DIR="${MUTANTS_TARGET_DIR:-$PWD/target/mutants}"

out="${MUTANTS_OUT:-$PWD/target}"
mkdir -p "$out"
args=(
  --file 'shared/src/domain/*.rs'
  --package shared
  --test-package shared
  --cargo-test-arg=--lib
  # A loaded machine runs the tests slowly; a mutant that loops is still cut off.
  --timeout-multiplier 5
  --minimum-test-timeout 60
  --output "$out"
)

if [[ "${1:-}" == --in-diff ]]; then
  base="${2:?usage: infra/mutants.sh --in-diff BASE}"
  diff_file=$(mktemp)
  trap 'rm -f "$diff_file"' EXIT
  git diff "$base" HEAD -- shared/src/domain >"$diff_file"
  if [[ ! -s "$diff_file" ]]; then
    echo "==> mutants: nothing in shared/src/domain changed since $(git rev-parse --short "$base")"
    exit 0
  fi
  count=$(cargo mutants "${args[@]}" --in-diff "$diff_file" --list | grep -c . || true)
  max="${MUTANTS_MAX:-40}"
  echo "==> mutants: $count mutants on the lines changed since $(git rev-parse --short "$base")"
  if ((count == 0)); then exit 0; fi
  if ((count > max)); then
    shards=$(((count + max - 1) / max))
    echo "==> mutants: more than $max: testing shard 0 of $shards (round-robin); make mutants tests all"
    args+=(--shard "0/$shards" --sharding round-robin)
  fi
  args+=(--in-diff "$diff_file")
fi

status=0
cargo mutants "${args[@]}" || status=$?
case "$status" in
  0) echo "==> mutants: every mutant caught" ;;
  3) echo "==> mutants: no mutant missed (some timed out, counted as caught)"; status=0 ;;
  2) echo "error: mutants survived (listed above; the full list is in $out/mutants.out/missed.txt)" >&2 ;;
  *) echo "error: cargo mutants failed ($status)" >&2 ;;
esac
exit "$status"
