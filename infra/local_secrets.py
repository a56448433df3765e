"""Runs the local Secrets Manager (moto's server, pinned in infra/requirements.txt) on 127.0.0.1
and stores one secret in it, as a deployment's `StripeSecretArn` names one on AWS:

    python infra/local_secrets.py --port 8421 --name payments/stripe \
        --secret-string '{"secret_key": "sk_test_…", "webhook_secret": "whsec_…"}'

The secret's value is read from the SECRET_STRING environment variable when --secret-string is
not given (so that it need not appear in a process list). Prints the secret's ARN on one line
once it is stored, then serves until killed. The connector reads it with a SigV4-signed
GetSecretValue (shared/src/processor/stripe/keys.rs), as on AWS.
"""

import argparse
import os
import sys
import threading

import boto3
from moto.server import ThreadedMotoServer

REGION = "us-east-1"


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, default=8421)
    parser.add_argument("--name", default="payments/stripe")
    parser.add_argument("--secret-string", default=os.environ.get("SECRET_STRING"))
    args = parser.parse_args()
    if not args.secret_string:
        sys.exit("local_secrets: give --secret-string or SECRET_STRING")
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=args.port, verbose=False)
    server.start()
    client = boto3.client(
        "secretsmanager",
        endpoint_url=f"http://127.0.0.1:{args.port}",
        region_name=REGION,
        aws_access_key_id="local",
        aws_secret_access_key="local",
    )
    arn = client.create_secret(Name=args.name, SecretString=args.secret_string)["ARN"]
    print(arn, flush=True)
    # Whoever started it may stop reading once it has the ARN.
    sys.stdout = open(os.devnull, "w")
    threading.Event().wait()


if __name__ == "__main__":
    main()
