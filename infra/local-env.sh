# Sourced by the local-stack scripts: where the local DynamoDB is and what the functions and
# the admin CLI read. Dummy credentials: DynamoDB Local checks only that they are there.
export LOCAL_DYNAMODB_PORT="${LOCAL_DYNAMODB_PORT:-8000}"
export AWS_ENDPOINT_URL_DYNAMODB="http://127.0.0.1:${LOCAL_DYNAMODB_PORT}"
export AWS_REGION="${AWS_REGION:-us-east-1}"
export AWS_ACCESS_KEY_ID="${AWS_ACCESS_KEY_ID:-local}"
export AWS_SECRET_ACCESS_KEY="${AWS_SECRET_ACCESS_KEY:-local}"
export TABLE_NAME="${TABLE_NAME:-payments-local}"
export RUST_LOG="${RUST_LOG:-info}"
# Webhook endpoints may point at a receiver on this machine (http://127.0.0.1:PORT/…); nothing
# deployed sets this.
export WEBHOOK_ALLOW_LOCAL_URLS=true
export PATH="$PWD/.venv/bin:$PATH"

# port_open PORT: whether something accepts connections on 127.0.0.1:PORT
port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# is_dynamodb PORT: whether what listens on 127.0.0.1:PORT answers a DynamoDB ListTables.
is_dynamodb() {
  curl -s --max-time 2 -X POST "http://127.0.0.1:$1/" \
    -H 'X-Amz-Target: DynamoDB_20120810.ListTables' -H 'Content-Type: application/x-amz-json-1.0' \
    -H 'Authorization: AWS4-HMAC-SHA256 Credential=local/20200101/us-east-1/dynamodb/aws4_request, SignedHeaders=host, Signature=0' \
    -d '{}' 2>/dev/null | grep -q '"TableNames"'
}

# free_port: a loopback port nothing listens on now (the OS picks it).
free_port() {
  python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# start_local_dynamodb PORT LOG: unless a DynamoDB already listens on PORT, starts Amazon's
# DynamoDB Local there (infra/dynamodb-local.sh, which installs it on first use), waits until it
# answers, and stops it when the script exits. A DynamoDB that was already running is reused and
# left alone (`make dev` on a table kept from before); anything else on the port is an error,
# not something to send payments to. With LOCAL_DYNAMODB_OWN=1 (the test runs) a server found
# on the port is an error too: a test run uses only a server it started, never one left behind.
local_dynamodb_pid=""
start_local_dynamodb() {
  local port=$1 log=$2
  if port_open "$port"; then
    if [[ "${LOCAL_DYNAMODB_OWN:-0}" == 1 ]]; then
      echo "error: 127.0.0.1:$port is taken (a server left from an earlier run?); a test run starts its own: free it or set another port" >&2
      return 1
    fi
    if is_dynamodb "$port"; then
      echo "==> reusing the DynamoDB already listening on 127.0.0.1:$port"
      return 0
    fi
    echo "error: 127.0.0.1:$port is taken by something that is not DynamoDB; free it or set another port" >&2
    return 1
  fi
  bash infra/dynamodb-local.sh install
  mkdir -p "$(dirname "$log")"
  echo "==> starting DynamoDB Local on 127.0.0.1:$port (log: $log)"
  bash infra/dynamodb-local.sh serve "$port" >"$log" 2>&1 &
  local_dynamodb_pid=$!
  trap stop_local_dynamodb EXIT
  local deadline=$((SECONDS + 60))
  until is_dynamodb "$port"; do
    if ! kill -0 "$local_dynamodb_pid" 2>/dev/null; then
      echo "error: DynamoDB Local exited; its log ($log):" >&2; cat "$log" >&2; return 1
    fi
    if ((SECONDS >= deadline)); then echo "error: DynamoDB Local did not answer on 127.0.0.1:$port in 60 s" >&2; return 1; fi
    sleep 0.2
  done
}
stop_local_dynamodb() {
  if [[ -n "$local_dynamodb_pid" ]]; then
    kill "$local_dynamodb_pid" 2>/dev/null || true
    wait "$local_dynamodb_pid" 2>/dev/null || true
  fi
}
