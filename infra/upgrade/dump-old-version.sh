#!/usr/bin/env bash
# Makes the upgrade test's data (infra/upgrade/<commit>.json): items written by an earlier
# version of this project, through its own HTTP API, as a deployment of it would hold them.
#
#   bash infra/upgrade/dump-old-version.sh [COMMIT]     # default d715663 (before authorization expiry)
#
# Checks the commit out in a temporary worktree, serves its local stack (its own `infra/dev.sh`,
# API on 127.0.0.1:9000) against this checkout's DynamoDB Local on a port of its own, makes a
# short history with infra/upgrade/make_history.py (authorizations, captures, refunds, cancels, a
# decline), then writes every item of its table, sorted by key, in DynamoDB's JSON form, with the
# dev merchant's key (a local test key) and the commit. Not part of `make test`: the dump is
# committed, and `shared/tests/upgrade.rs` migrates it with the current code.
set -euo pipefail
cd "$(dirname "$0")/../.."
root=$PWD
commit=${1:-d715663}
port=${OLD_DYNAMODB_PORT:-8125}
out="$root/infra/upgrade/$commit.json"
work=$(mktemp -d)
# Outside CI's cache folder, whose other keys .ci/run removes.
export CARGO_TARGET_DIR="${OLD_TARGET_DIR:-$HOME/.cache/old-version-targets/$commit}"

source infra/local-env.sh
make tools >/dev/null
pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill -- "-$pid" 2>/dev/null || kill "$pid" 2>/dev/null || true; done
  git -C "$root" worktree remove --force "$work/old" 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

start_local_dynamodb "$port" "$work/dynamodb.log"
# Its own trap stops DynamoDB Local; ours runs first, then calls it.
trap 'cleanup; stop_local_dynamodb' EXIT
set -m

echo "==> $commit in $work/old (target: $CARGO_TARGET_DIR)"
git worktree add --detach "$work/old" "$commit" >/dev/null
# Its tools are this checkout's (cargo-lambda for the watch); its own venv would install moto,
# which it does not need here: a DynamoDB already listens on the port, so it reuses it.
ln -s "$root/.venv" "$work/old/.venv"
(
  cd "$work/old"
  export LOCAL_DYNAMODB_PORT=$port TABLE_NAME=payments-upgrade
  exec bash infra/dev.sh >"$work/dev.log" 2>&1
) &
pids+=($!)
echo "==> waiting for its API (the first build of an old commit takes minutes)"
for _ in $(seq 1 1800); do
  curl -fs http://127.0.0.1:9000/health >/dev/null 2>&1 && break
  sleep 1
done
curl -fs http://127.0.0.1:9000/health >/dev/null || { tail -40 "$work/dev.log"; exit 1; }

key=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["api_key"])' "$work/old/.dev/merchant.json")
AWS_ENDPOINT_URL_DYNAMODB="http://127.0.0.1:$port" TABLE_NAME=payments-upgrade \
  .venv/bin/python infra/upgrade/make_history.py --base http://127.0.0.1:9000 --key "$key" \
  --commit "$commit" --out "$out"
echo "==> wrote $out"
