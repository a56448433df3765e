#!/usr/bin/env bash
# The end-to-end layer (../shared/DESIGN.md, test layer 4): the very stack `make dev` runs
# (infra/dev.sh: DynamoDB Local, the table, a dev merchant, `cargo lambda watch` with the
# template's routes, the local gateway), on ports and a table of its own, driven over HTTP by the
# tests in infra/e2e/ (the README's examples) and by Schemathesis. The stack is torn down when
# this script ends, whether the tests pass, fail or the run is interrupted.
#
# The stack runs with WATCH_RELOAD=0: a reload restarts every function and fails requests in
# flight, and a test run must not depend on nothing else touching the checkout (a `git status`
# beside it writes .git/index.lock). Still, nothing here writes into the checkout but .dev/.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$PWD/.venv/bin:$PATH"
# The stack's DynamoDB Local is this run's own (LOCAL_DYNAMODB_OWN: infra/dev.sh then refuses a
# server it finds on the port instead of reusing it), on a free port unless E2E_DYNAMODB_PORT
# names one, and it ends with the stack.
source infra/local-env.sh
export LOCAL_DYNAMODB_OWN=1
export LOCAL_DYNAMODB_PORT="${E2E_DYNAMODB_PORT:-$(free_port)}"
export AWS_ENDPOINT_URL_DYNAMODB="http://127.0.0.1:$LOCAL_DYNAMODB_PORT"
export LOCAL_API_PORT="${E2E_API_PORT:-9011}"
export DEV_MERCHANT_FILE=.dev/e2e-merchant.json
export TABLE_NAME=payments-e2e
export PYTHONDONTWRITEBYTECODE=1
# Authorizations lapse in seconds here, and the sweeper runs every few, so that the expiry tests
# (infra/e2e/test_authorization_expiry.py) see both; make dev's defaults are 7 days and 60 s.
export AUTHORIZATION_VALIDITY_SECONDS=20 EXPIRY_SWEEP_INTERVAL_SECONDS=5
export E2E_AUTHORIZATION_VALIDITY_SECONDS=$AUTHORIZATION_VALIDITY_SECONDS
# A customer action is abandoned after 30 s here (the page tests answer within a few).
export ACTION_VALIDITY_SECONDS=30 E2E_ACTION_VALIDITY_SECONDS=30
export E2E_EXPIRY_SWEEP_INTERVAL_SECONDS=$EXPIRY_SWEEP_INTERVAL_SECONDS
# E2E_PROCESSOR=stripe: the same stack with PROCESSOR=stripe (infra/dev.sh: localstripe and a
# local Secrets Manager on free ports of their own), driven by infra/e2e/stripe/ alone; the
# default (sandbox) run drives everything else, and Schemathesis.
export PROCESSOR="${E2E_PROCESSOR:-sandbox}"
if [[ "$PROCESSOR" == stripe ]]; then
  export LOCALSTRIPE_PORT="${E2E_LOCALSTRIPE_PORT:-$(free_port)}"
  export LOCAL_SECRETS_PORT="${E2E_LOCAL_SECRETS_PORT:-$(free_port)}"
  export E2E_LOCALSTRIPE_URL="http://127.0.0.1:$LOCALSTRIPE_PORT"
  export DEV_MERCHANT_FILE=.dev/e2e-stripe-merchant.json
fi
mkdir -p .dev
rm -f "$DEV_MERCHANT_FILE"

# Every function built first, as the watch builds it, so that no test's first request waits
# for a compile. The watch starts a function with `cargo run --bin <function>`, which resolves
# the features of that one package; a build of all of them in one invocation unifies features
# across the set (payments-admin's among them) and so is another build of `shared` and of every
# function, which the watch never uses: each function's first start compiled its own again (the
# "cause not found" of 2026-12-02: measured 2026-12-04, one build of every function in one
# invocation, then `cargo build --bin get-payment` recompiled shared and get-payment). So: one
# invocation per function, as the watch's; after the first, each finds shared built.
echo "==> building the functions for the local stack (as the watch builds them)"
for dir in functions/*/; do
  cargo build --quiet --bin "$(basename "$dir")"
done
cargo build --quiet -p payments-admin

stack_log=.dev/e2e-stack.log
echo "==> starting the local stack on 127.0.0.1:$LOCAL_API_PORT (log: $stack_log)"
# No reload on file changes (infra/dev.sh, WATCH_RELOAD).
WATCH_RELOAD=0 bash infra/dev.sh >"$stack_log" 2>&1 &
stack_pid=$!
stop_stack() {
  kill -TERM "$stack_pid" 2>/dev/null || true
  wait "$stack_pid" 2>/dev/null || true
}
trap stop_stack EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

base="http://127.0.0.1:$LOCAL_API_PORT"
deadline=$((SECONDS + 300))
until curl -s --max-time 5 "$base/health" 2>/dev/null | grep -q '"ok"'; do
  if ! kill -0 "$stack_pid" 2>/dev/null; then
    echo "error: the local stack exited; its log:" >&2
    cat "$stack_log" >&2
    exit 1
  fi
  if ((SECONDS >= deadline)); then
    echo "error: the local stack did not answer /health in 300 s; its log:" >&2
    cat "$stack_log" >&2
    exit 1
  fi
  sleep 1
done

export E2E_BASE_URL="$base"
# The stack's log: the functions' metrics lines are checked in it (infra/e2e/test_metrics.py).
export E2E_STACK_LOG="$stack_log"
E2E_API_KEY=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["api_key"])' "$DEV_MERCHANT_FILE")
export E2E_API_KEY
echo "==> end-to-end tests against $base"
# In the background, so that a TERM is acted on at once (bash runs a trap only after the
# foreground command ends), and the EXIT trap tears the stack down.
run_in_background() {
  "$@" &
  tests_pid=$!
  trap 'kill -TERM "$tests_pid" 2>/dev/null || true; exit 143' TERM
  trap 'kill -INT "$tests_pid" 2>/dev/null || true; exit 130' INT
  wait "$tests_pid"
}
# E2E_SKIP_PYTEST=1: Schemathesis alone (e.g. many seeds against one stack).
if [[ "$PROCESSOR" == stripe ]]; then
  echo "==> (Processor=stripe: infra/e2e/stripe against localstripe on $E2E_LOCALSTRIPE_URL)"
  run_in_background python -m pytest -p no:cacheprovider -q infra/e2e/stripe
  exit 0
fi
# E2E_PYTEST_ARGS: other pytest arguments, e.g. "-s infra/e2e/test_webhook_isolation.py" (one
# file, with what it prints).
if [[ "${E2E_SKIP_PYTEST:-0}" != 1 ]]; then
  # shellcheck disable=SC2086 # several arguments, split on purpose
  run_in_background python -m pytest -p no:cacheprovider -q ${E2E_PYTEST_ARGS:-infra/e2e --ignore=infra/e2e/stripe}
fi

# Schemathesis with the project's openapi.yaml: examples, coverage, fuzzing and stateful
# phases, every check but one (infra/schemathesis.toml says which and why). It runs in a
# scratch folder: Hypothesis keeps files where it runs, and the watch restarts every function
# when a file in the checkout changes. Each run draws a new seed (printed in its output, to
# reproduce a failure with SCHEMATHESIS_SEEDS=<seed>); SCHEMATHESIS_SEEDS="1 2 … 20" runs it once
# per seed against the same stack and reports every seed's result.
root=$PWD
scratch=$(mktemp -d)
failed_seeds=()
for seed in ${SCHEMATHESIS_SEEDS:-random}; do
  seed_args=()
  [[ "$seed" == random ]] || seed_args=(--seed "$seed")
  echo "==> Schemathesis against $base (infra/schemathesis.toml, seed: $seed)"
  run_in_background bash -c 'cd "$1" && shift && exec "$@"' _ "$scratch" \
    st --config-file "$root/infra/schemathesis.toml" run "$root/openapi.yaml" \
    --url "$base" \
    --header "Authorization: Bearer $E2E_API_KEY" --no-color "${seed_args[@]}" || failed_seeds+=("$seed")
done
rm -rf "$scratch"
if ((${#failed_seeds[@]})); then
  echo "error: Schemathesis failed with seed(s): ${failed_seeds[*]}" >&2
  exit 1
fi
