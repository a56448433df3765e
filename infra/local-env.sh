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
