"""The local stack's front door, where API Gateway stands when deployed: it takes the client's
HTTP request on the public port and hands it to `cargo lambda watch` (its router turns it into
the API Gateway event and invokes the function), and passes the answer back untouched.

Why it exists: the watch's router must put every header into the event as a JSON string, so a
header value with bytes that are not UTF-8 (obs-text, e.g. an `Idempotency-Key` of 0xd7 0xf8
0x9b, which HTTP allows) never reaches a function: the router answers 500 `text/plain` itself
(cargo-lambda 1.9.2, in 0 ms). Here every header value is read as ISO-8859-1 (HTTP's own
reading of such bytes) and passed on as UTF-8, so the function sees the characters and answers
what the contract says (400 `invalid_idempotency_key`). Nothing else is changed: no header is
added or dropped but the hop-by-hop ones, no status or body is touched.

A body that is not UTF-8 meets the same wall (the event carries a text body), and no reading of
it would be right: any transcoding could turn it into JSON the function accepts. So that one
request is answered here, exactly as the function answers a body it cannot read, in the
contract's order (413 over 16 KiB, 415 without `application/json`, else 400 `invalid_json`;
shared/src/http/request.rs). Every other method and path, undeclared ones included, goes to the
router. What the router answers itself for a route it does not have (a 404 or 405 with no
`x-request-id`: every function's answer carries one) becomes API Gateway's own answer,
`404 {"message":"Not Found"}`: the router's text names every function of the stack. The
watch's own invoke paths (`/2015-03-31/functions/…/invocations`, `/lambda-url/…`) are not routes
of the API: through here they are 404 too (the local schedules and the stream poller invoke
on the watch's port directly, as AWS does behind API Gateway's back).

Usage: python infra/local_gateway.py --port 9000 --upstream-port 9100
"""

import argparse
import http.client
import http.server
import json
import signal
import socketserver
import sys
import threading
import uuid

# The contract's body limit (API.md, "Conventions").
MAX_BODY_BYTES = 16 * 1024

# What API Gateway (HTTP API) answers for a route it does not have.
NOT_FOUND = b'{"message":"Not Found"}'

# The watch's invoke APIs: a client of the API cannot reach a function but by its route.
WATCH_ONLY_PREFIXES = ("/2015-03-31/", "/lambda-url/")

# Headers that describe one connection, not the request (RFC 9110, 7.6.1).
HOP_BY_HOP = {"connection", "keep-alive", "proxy-connection", "te", "trailer", "transfer-encoding", "upgrade"}


class Gateway(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    upstream_port = 0
    local = threading.local()

    def upstream(self) -> http.client.HTTPConnection:
        # One kept-alive connection to the watch per serving thread.
        connection = getattr(self.local, "connection", None)
        if connection is None:
            connection = http.client.HTTPConnection("127.0.0.1", self.upstream_port, timeout=900)
            self.local.connection = connection
        return connection

    def __getattr__(self, name):
        # Any method the client sends (QUERY, TRACE, …) is the router's to answer.
        if name.startswith("do_"):
            return self.forward
        raise AttributeError(name)

    def unreadable_body(self, body: bytes) -> None:
        """The function's answer to a body it cannot read (see the module docs)."""
        content_type = (self.headers.get("content-type") or "").split(";")[0].strip().lower()
        if len(body) > MAX_BODY_BYTES:
            status, code, title, detail = 413, "payload_too_large", "Payload too large", "the body is over 16 KiB"
        elif content_type != "application/json":
            status, code, title, detail = (
                415, "unsupported_media_type", "Unsupported media type", "send the body as application/json")
        else:
            status, code, title, detail = 400, "invalid_json", "Invalid JSON", "the body is not UTF-8 JSON"
        request_id = str(uuid.uuid4())
        payload = json.dumps({"type": "about:blank", "title": title, "status": status, "code": code,
                              "detail": detail, "request_id": request_id}).encode()
        self.send_response_only(status)
        self.send_header("content-type", "application/problem+json")
        self.send_header("x-request-id", request_id)
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def not_found(self) -> None:
        """API Gateway's answer to a method and path it has no route for."""
        payload = NOT_FOUND
        self.send_response_only(404)
        self.send_header("content-type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def read_body(self) -> bytes | None:
        if "chunked" in (self.headers.get("transfer-encoding") or "").lower():
            body = b""
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass  # trailers
                    return body
                body += self.rfile.read(size)
                self.rfile.readline()
        length = int(self.headers.get("content-length") or 0)
        return self.rfile.read(length) if length else None

    def forward(self) -> None:
        body = self.read_body()
        if self.path.startswith(WATCH_ONLY_PREFIXES):
            self.not_found()
            return
        if body is not None:
            try:
                body.decode("utf-8")
            except UnicodeDecodeError:
                self.unreadable_body(body)
                return
        headers = [
            (name, value.encode("utf-8"))
            for name, value in self.headers.items()
            if name.lower() not in HOP_BY_HOP and name.lower() not in ("content-length", "x-forwarded-proto")
        ]
        # As API Gateway does (it says `https`): how the client reached the API, which the
        # functions build their own URLs from (the sandbox's authentication page).
        headers.append(("x-forwarded-proto", b"http"))
        for attempt in (1, 2):
            connection = self.upstream()
            try:
                connection.putrequest(self.command, self.path, skip_host=True, skip_accept_encoding=True)
                for name, value in headers:
                    connection.putheader(name, value)
                if body is not None or self.command in ("POST", "PUT", "PATCH"):
                    connection.putheader("Content-Length", str(len(body or b"")))
                connection.endheaders(body)
                response = connection.getresponse()
                payload = response.read()
                break
            except (http.client.HTTPException, OSError):
                # A kept-alive connection the watch closed (it restarts functions on changes):
                # one fresh try, then the client hears of it.
                connection.close()
                self.local.connection = None
                if attempt == 2:
                    self.send_error(502, "the local stack's functions are not answering")
                    return
        if response.status in (404, 405) and response.getheader("x-request-id") is None:
            self.not_found()
            return
        self.send_response_only(response.status, response.reason)
        for name, value in response.getheaders():
            if name.lower() not in HOP_BY_HOP and name.lower() != "content-length":
                self.send_header(name, value)
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def log_message(self, format, *args):  # noqa: A002 - the base class's name
        pass  # the functions log every request themselves (JSON, with the request id)


class Server(socketserver.ThreadingMixIn, http.server.HTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    # Races sent over HTTP open many connections at once; the default backlog is 5.
    request_queue_size = 128


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--upstream-port", type=int, required=True)
    args = parser.parse_args()
    Gateway.upstream_port = args.upstream_port
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    with Server(("127.0.0.1", args.port), Gateway) as server:
        server.serve_forever()


if __name__ == "__main__":
    main()
