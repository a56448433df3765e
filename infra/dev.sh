#!/usr/bin/env bash
# `make dev`: starts DynamoDB Local unless one is already listening, creates the table
# unless it exists, reuses or creates the dev merchant, and serves the API with `cargo lambda
# watch` on http://127.0.0.1:9000 with the routes of template.yaml. Ctrl-C, or a TERM to it or to
# `make dev`, stops everything this script started.
set -euo pipefail
cd "$(dirname "$0")/.."
source infra/local-env.sh
mkdir -p .dev

api_port="${LOCAL_API_PORT:-9000}"
# In place of the deployed schedule (template.yaml ExpirySweepSchedule): the expiry sweeper runs
# this often. AUTHORIZATION_VALIDITY_SECONDS (if set) reaches the functions through the watch.
sweep_interval="${EXPIRY_SWEEP_INTERVAL_SECONDS:-60}"
if ! [[ "$sweep_interval" =~ ^[1-9][0-9]*$ ]]; then
  echo "error: EXPIRY_SWEEP_INTERVAL_SECONDS must be a whole number of seconds >= 1" >&2
  exit 1
fi
# Reconciliation of processing payments (template.yaml ReconcileSchedule) runs every 2 s
# locally, and asks about a payment first RECONCILE_AFTER_SECONDS after it (2 s locally; the
# back-off doubles from there), so an unknown outcome is settled in seconds.
export RECONCILE_AFTER_SECONDS="${RECONCILE_AFTER_SECONDS:-2}"
# The sandbox decides pm_card_processing SANDBOX_SETTLE_SECONDS after its create (deployed: 60)
# and its settle sweep looks every second (deployed: every minute).
export SANDBOX_SETTLE_SECONDS="${SANDBOX_SETTLE_SECONDS:-5}"
# The watch listens here; the public port is the local gateway's (infra/local_gateway.py).
watch_port=$((api_port + 100))
for port in "$api_port" "$watch_port"; do
  if port_open "$port"; then
    echo "error: 127.0.0.1:$port is taken (another make dev?); stop it or set LOCAL_API_PORT" >&2
    exit 1
  fi
done

trap 'exit 130' INT
trap 'exit 143' TERM
start_local_dynamodb "$LOCAL_DYNAMODB_PORT" ".dev/dynamodb-$LOCAL_DYNAMODB_PORT.log"

echo "==> building the admin CLI"
cargo build --quiet -p payments-admin
admin() { cargo run --quiet -p payments-admin -- "$@"; }
admin table create >/dev/null
# The list functions sign cursors with it (a merchant's creation makes it too; this covers a
# table whose dev merchant came before it).
admin secrets ensure >/dev/null

merchant_file="${DEV_MERCHANT_FILE:-.dev/merchant.json}"
merchant_id=""
if [[ -f "$merchant_file" ]]; then
  merchant_id=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["merchant_id"])' "$merchant_file")
  if ! admin merchants show --merchant "$merchant_id" >/dev/null 2>&1; then merchant_id=""; fi
fi
if [[ -z "$merchant_id" ]]; then
  # Written whole or not at all: a failure half-way leaves the previous file, never a torn one.
  admin merchants create --name dev >"$merchant_file.tmp"
  mv "$merchant_file.tmp" "$merchant_file"
fi
api_key=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["api_key"])' "$merchant_file")

cat <<MSG

  Local payments API: http://127.0.0.1:$api_port   (DynamoDB: $AWS_ENDPOINT_URL_DYNAMODB, table $TABLE_NAME)
  Expiry sweep:       every ${sweep_interval} s; authorizations hold ${AUTHORIZATION_VALIDITY_SECONDS:-604800} s, customer actions ${ACTION_VALIDITY_SECONDS:-86400} s
  Webhooks:           the table's stream is relayed to relay-webhook-events; retries every 1 s
                      (receive them: .venv/bin/python infra/webhook_receiver.py --port 9300 --secret whsec_…)
  Dev merchant:       $(cat "$merchant_file")

  export API_KEY=$api_key
  curl -s http://127.0.0.1:$api_port/health
  curl -s -X POST http://127.0.0.1:$api_port/payments -H "Authorization: Bearer \$API_KEY" \\
       -H 'Content-Type: application/json' -d '{"amount":2500,"currency":"usd","payment_method":"pm_card_visa"}'

MSG
echo "==> cargo lambda watch (first request to each function compiles it; Ctrl-C stops all)"
# In the background, so that a TERM (`kill` of `make dev`) is handled at once rather than after
# the watch ends: it is passed on as the Ctrl-C that the watch answers by stopping its
# functions, and the EXIT trap then stops DynamoDB Local.
# WATCH_RELOAD=0 (the test run's): no rebuild and restart on a file change. A reload stops
# every running function (a relay invocation mid-delivery among them) and recompiles before the
# next request: a `git` command beside a test run once did that every few seconds, and
# webhooks missed their arrival window on a loaded machine. What `make dev` reloads on, and
# what it never does (.git, the venv, logs, builds): .cargolambdaignore.
reload_flag=()
if [[ "${WATCH_RELOAD:-1}" == 0 ]]; then reload_flag=(--ignore-changes); fi
cargo lambda watch -A 127.0.0.1 -P "$watch_port" --concurrency "${WATCH_CONCURRENCY:-4}" "${reload_flag[@]}" &
watch_pid=$!
# In front of it, where API Gateway stands when deployed (why: infra/local_gateway.py).
python3 infra/local_gateway.py --port "$api_port" --upstream-port "$watch_port" &
gateway_pid=$!
# Where EventBridge Scheduler stands when deployed.
python3 infra/local_schedule.py --function expire-authorizations --every "$sweep_interval" \
  --port "$watch_port" --payload-file events/expire-authorizations.json &
schedule_pid=$!
# Where the stream's event source mapping stands: new events to the webhook relay.
python3 infra/local_stream.py --function relay-webhook-events --port "$watch_port" \
  --table "$TABLE_NAME" &
stream_pid=$!
# The webhook retry sweep, one pass a second (deployed: a run a minute that sweeps for 50 s).
python3 infra/local_schedule.py --function retry-webhook-deliveries --every 1 --quiet \
  --port "$watch_port" --payload-file events/retry-webhook-deliveries.json &
retry_pid=$!
python3 infra/local_schedule.py --function reconcile-payments --every 2 --quiet \
  --port "$watch_port" --payload-file events/reconcile-payments.json &
reconcile_pid=$!
python3 infra/local_schedule.py --function sandbox-settle --every 1 --quiet \
  --port "$watch_port" --payload-file events/sandbox-settle.json &
settle_pid=$!
stop_watch() {
  kill -TERM "$schedule_pid" "$gateway_pid" "$stream_pid" "$retry_pid" "$reconcile_pid" "$settle_pid" 2>/dev/null || true
  kill -INT "$watch_pid" 2>/dev/null || true
  wait "$watch_pid" 2>/dev/null || true
  wait "$gateway_pid" "$schedule_pid" "$stream_pid" "$retry_pid" "$reconcile_pid" "$settle_pid" 2>/dev/null || true
}
trap 'stop_watch; exit 143' TERM
trap 'stop_watch; exit 130' INT
# Any one ending ends the stack.
status=0
wait -n "$watch_pid" "$gateway_pid" "$schedule_pid" "$stream_pid" "$retry_pid" "$reconcile_pid" "$settle_pid" || status=$?
stop_watch
exit "$status"
