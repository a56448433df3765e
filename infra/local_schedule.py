"""Stands in for EventBridge Scheduler in `make dev`: every N seconds, invokes a function through
the Lambda Invoke API that `cargo lambda watch` serves (the same function binary, the same kind of
payload as the deployed schedule's `Input`), and prints one line per run with what it answered.

    python3 infra/local_schedule.py --function expire-authorizations --every 60 \
        --port 9100 --payload-file events/expire-authorizations.json

By default a run starts only once the one before has answered. `--overlap` starts each on time
whatever the one before is doing, as EventBridge Scheduler does (the webhook dispatcher's runs
overlap on purpose: README, "Isolation"); the watch's `--concurrency` bounds how many run at once.
"""

import argparse
import json
import sys
import threading
import time
import urllib.error
import urllib.request


def invoke(port: int, function: str, payload: bytes, timeout: float) -> str:
    url = f"http://127.0.0.1:{port}/2015-03-31/functions/{function}/invocations"
    request = urllib.request.Request(url, data=payload, method="POST")
    request.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            body = response.read().decode("utf-8", "replace")
            # Lambda marks a function error with a header, not the status.
            failed = response.headers.get("X-Amz-Function-Error")
            return f"{'error' if failed else 'ok'} {body}"
    except urllib.error.HTTPError as err:
        return f"error HTTP {err.code} {err.read().decode('utf-8', 'replace')}"
    except (urllib.error.URLError, OSError) as err:
        return f"error {err}"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--function", required=True)
    parser.add_argument("--every", type=int, required=True, help="seconds between runs (>= 1)")
    parser.add_argument("--port", type=int, required=True, help="cargo lambda watch's port")
    parser.add_argument("--payload-file", required=True)
    parser.add_argument("--timeout", type=float, default=120.0)
    parser.add_argument("--overlap", action="store_true",
                        help="start each run on time, even while the one before still runs")
    parser.add_argument("--quiet", action="store_true",
                        help="print only runs that failed or did something (a frequent timer)")
    args = parser.parse_args()
    if args.every < 1:
        parser.error("--every must be at least 1")
    with open(args.payload_file, "rb") as file:
        payload = file.read()
    json.loads(payload)  # a broken sample event fails here, at start, not on every run

    def one_run():
        outcome = invoke(args.port, args.function, payload, args.timeout)
        if args.quiet and outcome.startswith("ok ") and '"due":0' in outcome:
            return
        print(f"[schedule] {args.function}: {outcome}", file=sys.stderr, flush=True)

    next_run = time.monotonic() + args.every
    while True:
        time.sleep(max(0.0, next_run - time.monotonic()))
        # At a fixed rate, like a schedule; a run that overran is not made up for.
        next_run = max(next_run + args.every, time.monotonic())
        if args.overlap:
            threading.Thread(target=one_run, daemon=True).start()
        else:
            one_run()


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt:
        sys.exit(130)
