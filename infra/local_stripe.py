"""Runs localstripe (the local Stripe, pinned in infra/requirements.txt) on 127.0.0.1 only.

localstripe's own `localstripe --port N` listens on every interface and reloads the state a
previous run pickled to disk; this starts it fresh, on the loopback address alone:

    python infra/local_stripe.py --port 8420
"""

import argparse
import logging

from aiohttp import web
from localstripe.resources import store
from localstripe.server import app


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, default=8420)
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO)
    # It pickles its whole state to one /tmp file after every write; nothing here reads it back.
    store.dump_to_disk = lambda: None
    web.run_app(app, host="127.0.0.1", port=args.port, print=None)


if __name__ == "__main__":
    main()
