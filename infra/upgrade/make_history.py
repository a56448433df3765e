"""Makes a short payment history through a running stack's HTTP API, then dumps its whole table
(infra/upgrade/dump-old-version.sh runs it against an old commit's stack).

The history: an authorization left uncaptured (the one the old version gave no expiry), one
captured in part, a payment refunded in part, a canceled authorization, and a declined card.
The dump is every item of the table, sorted by (PK, SK), in DynamoDB's JSON form, with what the
upgrade test needs to drive the API as the dev merchant (its key is a local test key)."""

import argparse
import json
import os

import boto3
import requests


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--base", required=True)
    parser.add_argument("--key", required=True)
    parser.add_argument("--commit", required=True)
    parser.add_argument("--out", required=True)
    args = parser.parse_args()
    http = requests.Session()
    http.headers["Authorization"] = f"Bearer {args.key}"

    def post(path, body=None):
        response = http.post(args.base + path, json=body if body is not None else {}, timeout=120)
        assert response.status_code in (200, 201), f"{path}: {response.status_code} {response.text}"
        return response.json()

    def pay(**fields):
        return post("/payments", {"amount": 5000, "currency": "usd", "payment_method": "pm_card_visa", **fields})

    history = {
        "uncaptured": pay(capture_method="manual", description="an authorization left open")["id"],
        "captured": pay(capture_method="manual")["id"],
        "refunded": pay()["id"],
        "canceled": pay(capture_method="manual")["id"],
        "declined": pay(payment_method="pm_card_declined")["id"],
    }
    post(f"/payments/{history['captured']}/capture", {"amount": 3000})
    post(f"/payments/{history['refunded']}/refunds", {"amount": 1200})
    post(f"/payments/{history['canceled']}/cancel", {"cancellation_reason": "requested_by_customer"})

    # The low-level client: items in DynamoDB's wire form ({"S": …}, {"N": "…"}).
    client = boto3.client(
        "dynamodb",
        endpoint_url=os.environ["AWS_ENDPOINT_URL_DYNAMODB"],
        region_name=os.environ.get("AWS_REGION", "us-east-1"),
        aws_access_key_id="local",
        aws_secret_access_key="local",
    )
    items, start = [], None
    while True:
        more = {"ExclusiveStartKey": start} if start else {}
        page = client.scan(TableName=os.environ["TABLE_NAME"], **more)
        items.extend(page["Items"])
        start = page.get("LastEvaluatedKey")
        if not start:
            break
    items.sort(key=lambda item: (item["PK"]["S"], item["SK"]["S"]))
    dump = {
        "commit": args.commit,
        "made_by": f"bash infra/upgrade/dump-old-version.sh {args.commit}",
        "api_key": args.key,
        "payments": history,
        "items": items,
    }
    with open(args.out, "w") as out:
        json.dump(dump, out, indent=1, sort_keys=True)
        out.write("\n")


if __name__ == "__main__":
    main()
