"""The local DynamoDB: moto's server, applying one call at a time.

Why not plain `moto_server`: it serves requests on concurrent threads, and moto applies a
TransactWriteItems by checking and writing its items one by one, rolling back by restoring a
copy of the table taken before it began. Two concurrent transactions can then both pass a
condition, and one's rollback can erase what the other committed: a conditional write is not
atomic. DynamoDB makes every call atomic. Serving calls one at a time gives moto that property,
while clients still race *between* calls (read, read, write, write), which is the concurrency
the tests and `make dev` exercise.

The HTTP server is waitress, not werkzeug's dev server, for two reasons:
- Keep-alive. Werkzeug answers every request with `Connection: close`, so each DynamoDB call
  paid a new TCP connection, which real DynamoDB does not make clients pay; `make bench`'s CPU
  per invoke then measured loopback connects as much as our code. Waitress keeps connections
  open, as DynamoDB does.
- A stalled client blocks no one: waitress reads requests on one I/O loop and hands only
  complete requests to its worker threads. (A `make bench` run once froze mid-run on a
  single-threaded server.)

Usage: python infra/local_dynamodb.py -H 127.0.0.1 -p 8000
"""

import argparse
import logging
import os
import signal
import sys
import threading

from moto.core.model_instances import reset_model_data
from moto.moto_server.werkzeug_app import DomainDispatcherApplication, create_backend_app
from waitress import serve


class OneCallAtATime:
    """WSGI middleware: runs the wrapped app under one lock, response body included (moto may
    build it lazily), so no two calls interleave.

    After each call it also drops moto's list of every model object it ever made. moto keeps
    that list only for its dashboard, and it holds on to the copy of the whole table that
    TransactWriteItems takes (to roll back): without this, memory grows with every transaction
    times the table's size (6.8 GB after one `make bench` subject's 1000 creates)."""

    def __init__(self, app):
        self.app = app
        self.lock = threading.Lock()

    def __call__(self, environ, start_response):
        with self.lock:
            response = self.app(environ, start_response)
            try:
                return [b"".join(response)]
            finally:
                close = getattr(response, "close", None)
                if close is not None:
                    close()
                reset_model_data()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-H", "--host", default="127.0.0.1")
    parser.add_argument("-p", "--port", type=int, default=8000)
    args = parser.parse_args()
    os.environ.setdefault("MOTO_PORT", str(args.port))
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    signal.signal(signal.SIGINT, lambda *_: sys.exit(0))
    # Waitress warns whenever requests queue for a worker thread. Under the lock that queue is
    # the design (calls wait their turn), not a fault.
    logging.getLogger("waitress.queue").setLevel(logging.ERROR)
    app = OneCallAtATime(DomainDispatcherApplication(create_backend_app))
    serve(
        app,
        host=args.host,
        port=args.port,
        # Calls run one at a time under the lock; more threads would only wait on it.
        threads=4,
        # Keep-alive means idle connections stay open: the test suite's clients can hold
        # more than waitress's default 100, and `poll` lifts select()'s 1024-descriptor cap.
        connection_limit=1000,
        asyncore_use_poll=True,
        ident="local-dynamodb",
    )


if __name__ == "__main__":
    main()
