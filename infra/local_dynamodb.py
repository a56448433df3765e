"""The local DynamoDB: moto's server, answering one request at a time.

Why not plain `moto_server`: it serves requests on concurrent threads, and moto applies a
TransactWriteItems by checking and writing its items one by one, rolling back by restoring a
copy of the table taken before it began. Two concurrent transactions can then both pass a
condition, and one's rollback can erase what the other committed: a conditional write is not
atomic. DynamoDB makes every call atomic. Serving calls one at a time gives moto that property,
while clients still race *between* calls (read, read, write, write), which is the concurrency
the tests and `make dev` exercise.

Usage: python infra/local_dynamodb.py -H 127.0.0.1 -p 8000
"""

import argparse
import os
import signal
import sys

from moto.moto_server.werkzeug_app import (
    DomainDispatcherApplication,
    MotoRequestHandler,
    create_backend_app,
)
from werkzeug.serving import run_simple


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-H", "--host", default="127.0.0.1")
    parser.add_argument("-p", "--port", type=int, default=8000)
    args = parser.parse_args()
    os.environ.setdefault("MOTO_PORT", str(args.port))
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    signal.signal(signal.SIGINT, lambda *_: sys.exit(0))
    app = DomainDispatcherApplication(create_backend_app)
    run_simple(
        args.host,
        args.port,
        app,
        threaded=False,
        use_reloader=False,
        request_handler=MotoRequestHandler,
    )


if __name__ == "__main__":
    main()
