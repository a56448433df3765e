"""The local DynamoDB: moto's server, applying one call at a time.

Why not plain `moto_server`: it serves requests on concurrent threads, and moto applies a
TransactWriteItems by checking and writing its items one by one, rolling back by restoring a
copy of the table taken before it began. Two concurrent transactions can then both pass a
condition, and one's rollback can erase what the other committed: a conditional write is not
atomic. DynamoDB makes every call atomic. Serving calls one at a time gives moto that property,
while clients still race *between* calls (read, read, write, write), which is the concurrency
the tests and `make dev` exercise.

Each connection still gets its own thread (only the calls are serialised, by a lock): with a
single-threaded server, one client that connects and then stalls blocks every other client
until it goes away. (A `make bench` run froze mid-run on the single-threaded server, cause not
pinned down; three full runs since on this one have not.)

Usage: python infra/local_dynamodb.py -H 127.0.0.1 -p 8000
"""

import argparse
import os
import signal
import sys
import threading

from moto.moto_server.werkzeug_app import (
    DomainDispatcherApplication,
    MotoRequestHandler,
    create_backend_app,
)
from werkzeug.serving import run_simple


class OneCallAtATime:
    """WSGI middleware: runs the wrapped app under one lock, response body included (moto may
    build it lazily), so no two calls interleave."""

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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-H", "--host", default="127.0.0.1")
    parser.add_argument("-p", "--port", type=int, default=8000)
    args = parser.parse_args()
    os.environ.setdefault("MOTO_PORT", str(args.port))
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    signal.signal(signal.SIGINT, lambda *_: sys.exit(0))
    app = OneCallAtATime(DomainDispatcherApplication(create_backend_app))
    run_simple(
        args.host,
        args.port,
        app,
        threaded=True,
        use_reloader=False,
        request_handler=MotoRequestHandler,
    )


if __name__ == "__main__":
    main()
