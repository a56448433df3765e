# Sourced by the local-stack scripts: where the local DynamoDB is and what the functions and
# the admin CLI read. Dummy credentials: moto accepts any.
export LOCAL_DYNAMODB_PORT="${LOCAL_DYNAMODB_PORT:-8000}"
export AWS_ENDPOINT_URL_DYNAMODB="http://127.0.0.1:${LOCAL_DYNAMODB_PORT}"
export AWS_REGION="${AWS_REGION:-us-east-1}"
export AWS_ACCESS_KEY_ID="${AWS_ACCESS_KEY_ID:-local}"
export AWS_SECRET_ACCESS_KEY="${AWS_SECRET_ACCESS_KEY:-local}"
export TABLE_NAME="${TABLE_NAME:-payments-local}"
# Local only; deployed stacks sign cursors with a generated secret (template.yaml).
export CURSOR_SECRET="${CURSOR_SECRET:-local-dev-cursor-secret-not-for-production-use}"
export RUST_LOG="${RUST_LOG:-info}"
export PATH="$PWD/.venv/bin:$PATH"

# port_open PORT: whether something accepts connections on 127.0.0.1:PORT
port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# wait_for_port PORT SECONDS
wait_for_port() {
  local deadline=$((SECONDS + $2))
  until port_open "$1"; do
    if ((SECONDS >= deadline)); then echo "nothing listens on 127.0.0.1:$1 after $2 s" >&2; return 1; fi
    sleep 0.2
  done
}

# start_local_dynamodb PORT LOG: unless something already listens on PORT, starts the local
# DynamoDB (infra/local_dynamodb.py) there, waits for it, and stops it when the script exits.
# A server that was already running is reused and left alone.
local_dynamodb_pid=""
start_local_dynamodb() {
  local port=$1 log=$2
  if port_open "$port"; then
    echo "==> reusing the local DynamoDB on 127.0.0.1:$port"
    return 0
  fi
  mkdir -p "$(dirname "$log")"
  echo "==> starting the local DynamoDB (moto) on 127.0.0.1:$port (log: $log)"
  python infra/local_dynamodb.py -H 127.0.0.1 -p "$port" >"$log" 2>&1 &
  local_dynamodb_pid=$!
  trap stop_local_dynamodb EXIT
  wait_for_port "$port" 60
}
stop_local_dynamodb() {
  if [[ -n "$local_dynamodb_pid" ]]; then
    kill "$local_dynamodb_pid" 2>/dev/null || true
    wait "$local_dynamodb_pid" 2>/dev/null || true
  fi
}
