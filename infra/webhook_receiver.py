"""A webhook receiver for the local stack: verifies every delivery's Standard Webhooks signature
with the `standardwebhooks` library (an implementation independent of ours) and prints one JSON
line per delivery. Answers 204 to a verified delivery, 400 to one that does not verify.

    .venv/bin/python infra/webhook_receiver.py --port 9300 --secret whsec_...

Register `http://127.0.0.1:9300/` as an endpoint (make dev accepts local URLs) and use the
`secret` its create response showed. `--fail-first N` answers 500 to the first N deliveries (to
watch the retries), `--status 410` answers that to every one. Two hostile kinds, for the
isolation scenario (infra/e2e/test_webhook_isolation.py): `--hold S` waits S seconds before it
answers, `--answer-bytes N` answers with a body of N bytes (streamed, without a length). The e2e
tests import `Receiver`.
"""

import argparse
import json
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from standardwebhooks.webhooks import Webhook, WebhookVerificationError


class Receiver:
    """Records every request; `verified` says whether any of `secrets` verifies it."""

    def __init__(self, port: int = 0, secrets=(), script=(), status: int = 204, echo=False,
                 hold: float = 0.0, answer_bytes: int = 0):
        self.secrets = list(secrets)
        self.hold = hold
        self.answer_bytes = answer_bytes
        # Body bytes of answers handed to the socket (`answer_bytes`), and how many answers
        # were cut off by the client hanging up.
        self.sent_bytes = 0
        self.hung_up = 0
        self.script = list(script)
        self.status = status
        self.echo = echo
        self.deliveries = []
        self.lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("content-length", "0")))
                headers = {k.lower(): v for k, v in self.headers.items()}
                verified = receiver.verify(body, headers)
                with receiver.lock:
                    answer = receiver.script.pop(0) if receiver.script else receiver.status
                    if not verified:
                        answer = 400
                    delivery = {
                        "at": time.monotonic(),
                        "webhook_id": headers.get("webhook-id"),
                        "timestamp": headers.get("webhook-timestamp"),
                        "signature": headers.get("webhook-signature"),
                        "verified": verified,
                        "answered": answer,
                        "body": json.loads(body or b"null"),
                        "raw": body,
                    }
                    receiver.deliveries.append(delivery)
                if receiver.echo:
                    event = delivery["body"] or {}
                    print(json.dumps({k: delivery[k] for k in ("webhook_id", "verified", "answered")}
                                     | {"type": event.get("type"), "payment_id": event.get("payment_id")}),
                          flush=True)
                if receiver.hold:
                    time.sleep(receiver.hold)
                self.send_response(answer)
                if receiver.answer_bytes:
                    self.send_answer(receiver.answer_bytes)
                    return
                self.send_header("content-length", "0")
                self.end_headers()

            def send_answer(self, size):
                # No length: the body ends when the connection closes.
                self.send_header("connection", "close")
                self.end_headers()
                chunk = b"x" * 65536
                left = size
                try:
                    while left > 0:
                        part = chunk[: min(left, len(chunk))]
                        self.wfile.write(part)
                        left -= len(part)
                        with receiver.lock:
                            receiver.sent_bytes += len(part)
                except (BrokenPipeError, ConnectionResetError):
                    with receiver.lock:
                        receiver.hung_up += 1

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
        self.port = self.server.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}/hooks"

    def verify(self, body: bytes, headers: dict) -> bool:
        for secret in self.secrets:
            try:
                Webhook(secret).verify(body, headers)
                return True
            except WebhookVerificationError:
                continue
        return False

    def start(self) -> "Receiver":
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        self.server.shutdown()

    def received(self):
        with self.lock:
            return list(self.deliveries)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=9300)
    parser.add_argument("--secret", action="append", required=True,
                        help="whsec_… (repeat during a rotation: either verifies)")
    parser.add_argument("--fail-first", type=int, default=0)
    parser.add_argument("--status", type=int, default=204)
    parser.add_argument("--hold", type=float, default=0.0, help="seconds to wait before answering")
    parser.add_argument("--answer-bytes", type=int, default=0, help="answer with a body this long")
    args = parser.parse_args()
    receiver = Receiver(args.port, args.secret, [500] * args.fail_first, args.status, echo=True,
                        hold=args.hold, answer_bytes=args.answer_bytes)
    print(f"[receiver] listening on http://127.0.0.1:{receiver.port}/", file=sys.stderr, flush=True)
    receiver.server.serve_forever()
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt:
        sys.exit(130)
