#!/usr/bin/env bash
# `make dev`: starts DynamoDB Local unless one is already listening (and, with PROCESSOR=stripe,
# localstripe and a local Secrets Manager holding its keys), creates the table
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

# PROCESSOR=stripe (`make dev PROCESSOR=stripe`): payments go through the Stripe connector to
# localstripe on 127.0.0.1:LOCALSTRIPE_PORT, with the keys in a local Secrets Manager
# (infra/local_secrets.py) as a deployment keeps them in StripeSecretArn, and localstripe's
# webhooks signed with a secret made here and sent to this stack's POST /processor_events/stripe.
# The sandbox is the default.
export PROCESSOR="${PROCESSOR:-sandbox}"
stripe_pids=()
case "$PROCESSOR" in
  sandbox) ;;
  stripe)
    stripe_port="${LOCALSTRIPE_PORT:-8420}"
    secrets_port="${LOCAL_SECRETS_PORT:-$((stripe_port + 1))}"
    for port in "$stripe_port" "$secrets_port"; do
      if port_open "$port"; then
        echo "error: 127.0.0.1:$port is taken; free it or set LOCALSTRIPE_PORT / LOCAL_SECRETS_PORT" >&2
        exit 1
      fi
    done
    echo "==> starting localstripe on 127.0.0.1:$stripe_port (log: .dev/localstripe.log)"
    python3 infra/local_stripe.py --port "$stripe_port" >.dev/localstripe.log 2>&1 &
    stripe_pids+=($!)
    webhook_secret="whsec_$(python3 -c 'import secrets; print(secrets.token_hex(24))')"
    echo "==> starting the local Secrets Manager on 127.0.0.1:$secrets_port (log: .dev/local-secrets.log)"
    SECRET_STRING="{\"secret_key\": \"sk_test_local\", \"webhook_secret\": \"$webhook_secret\"}" \
      python3 infra/local_secrets.py --port "$secrets_port" >.dev/stripe-secret-arn 2>.dev/local-secrets.log &
    stripe_pids+=($!)
    trap 'kill "${stripe_pids[@]}" 2>/dev/null || true; stop_local_dynamodb' EXIT
    deadline=$((SECONDS + 60))
    until port_open "$stripe_port" && [[ -s .dev/stripe-secret-arn ]]; do
      if ((SECONDS >= deadline)); then
        echo "error: localstripe or the local Secrets Manager did not start in 60 s; logs in .dev/" >&2
        exit 1
      fi
      sleep 0.2
    done
    export STRIPE_SECRET_ARN
    STRIPE_SECRET_ARN=$(head -n 1 .dev/stripe-secret-arn)
    export AWS_ENDPOINT_URL_SECRETS_MANAGER="http://127.0.0.1:$secrets_port"
    export STRIPE_API_BASE="http://127.0.0.1:$stripe_port"
    # localstripe's own configuration route: where it sends its events, signed with what.
    curl -sf -X POST "$STRIPE_API_BASE/_config/webhooks/payments" \
      --data-urlencode "url=http://127.0.0.1:$api_port/processor_events/stripe" \
      --data-urlencode "secret=$webhook_secret" >/dev/null
    ;;
  *)
    echo "error: PROCESSOR must be sandbox or stripe" >&2
    exit 1
    ;;
esac

echo "==> building the admin CLI"
cargo build --quiet -p payments-admin
admin() { cargo run --quiet -p payments-admin -- "$@"; }
# A new table is created; one of an earlier version (a DynamoDB Local kept running across an
# upgrade) gets the indexes, stream and TTL it lacks, as CloudFormation does on a deploy.
admin table create
# Then its items are brought to this version's shape (README, "Upgrades"): every pending data
# migration, before anything serves; its progress lines go to .dev/migrate.log.
echo "==> data migrations (progress: .dev/migrate.log)"
if ! admin migrate run --segments 2 --units-per-second 2000 --wait 60 >.dev/migrate.json 2>.dev/migrate.log; then
  tail -20 .dev/migrate.log >&2
  echo "error: a data migration did not finish (above); fix it, then run make dev again" >&2
  exit 1
fi
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
  Processor:          $PROCESSOR${STRIPE_API_BASE:+ (localstripe: $STRIPE_API_BASE; its events to /processor_events/stripe)}
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
# The webhook dispatcher, as deployed but faster: a run every 10 s that sweeps a pass a second
# for 12 s (its window and timeout: functions/retry-webhook-deliveries/Cargo.toml), so runs
# overlap and a delivery is started within about a second even while a run waits for its slow
# endpoints' last attempts (deployed: a run a minute, sweeping for 65 s).
python3 infra/local_schedule.py --function retry-webhook-deliveries --every 10 --overlap --quiet \
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
