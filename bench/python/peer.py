"""The Python peer of create-payment and get-payment: what a team would write with boto3.

It does the same work as the Rust functions, against the same table: authenticate the API key
(SHA-256 → GetItem, the answer cached for 60 s per container exactly as the Rust functions cache
it, so neither side is timed doing work the other skips), validate the body, and write the payment with its event in one
TransactWriteItems (create) or read the payment (get). The boto3 client is built once at import,
as a Lambda should. Run by `make bench` under awslambdaric, the AWS runtime interface client.
"""

import hashlib
import json
import os
import time
import uuid

import boto3
from boto3.dynamodb.types import TypeDeserializer, TypeSerializer

TABLE = os.environ["TABLE_NAME"]
CLIENT = boto3.client("dynamodb")
SERIALIZE = TypeSerializer().serialize
DESERIALIZE = TypeDeserializer().deserialize
APPROVED = {"pm_card_visa", "pm_card_mastercard", "pm_card_amex"}
KEY_CACHE_SECONDS = 60
_key_cache = {}  # key digest -> (merchant id or None, monotonic time it was looked up)


def _response(status, body):
    return {"statusCode": status, "headers": {"content-type": "application/json"}, "body": json.dumps(body)}


def _problem(status, code):
    return {"statusCode": status, "headers": {"content-type": "application/problem+json"},
            "body": json.dumps({"type": "about:blank", "status": status, "code": code})}


def _merchant(event):
    header = (event.get("headers") or {}).get("authorization", "")
    scheme, _, key = header.partition(" ")
    if scheme.lower() != "bearer" or not key.startswith("sk_"):
        return None
    digest = hashlib.sha256(key.encode()).hexdigest()
    cached = _key_cache.get(digest)
    if cached is not None and time.monotonic() - cached[1] < KEY_CACHE_SECONDS:
        return cached[0]
    item = CLIENT.get_item(TableName=TABLE, Key={"PK": {"S": f"APIKEY#{digest}"}, "SK": {"S": "APIKEY"}},
                           ConsistentRead=True).get("Item")
    if not item:
        return None  # unknown keys are not cached: a key created a moment ago must work at once
    merchant = None if "revoked_at" in item else item["merchant_id"]["S"]
    _key_cache[digest] = (merchant, time.monotonic())
    return merchant


def _now():
    t = time.time()
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(t)) + f".{int(t * 1000) % 1000:03d}Z"


def create_payment(event, context):
    merchant = _merchant(event)
    if merchant is None:
        return _problem(401, "unauthenticated")
    try:
        body = json.loads(event.get("body") or "")
    except ValueError:
        return _problem(400, "invalid_json")
    amount = body.get("amount")
    if not isinstance(amount, int) or isinstance(amount, bool) or not 1 <= amount <= 99_999_999_999:
        return _problem(400, "validation_error")
    currency = body.get("currency")
    if not isinstance(currency, str) or len(currency) != 3:
        return _problem(400, "validation_error")
    approved = body.get("payment_method") in APPROVED
    now = _now()
    payment_id = "pay_" + uuid.uuid4().hex
    payment = {
        "id": payment_id, "object": "payment", "amount": amount, "currency": currency.upper(),
        "status": "succeeded" if approved else "failed", "capture_method": "automatic",
        "payment_method": body.get("payment_method"), "amount_capturable": 0,
        "amount_captured": amount if approved else 0, "amount_refunded": 0,
        "description": body.get("description"), "metadata": body.get("metadata") or {},
        "failure": None, "cancellation_reason": None, "created_at": now, "updated_at": now,
    }
    pk = f"MERCHANT#{merchant}#PAYMENT#{payment_id}"
    item = {k: SERIALIZE(v) for k, v in payment.items()}
    item.update({"PK": {"S": pk}, "SK": {"S": "PAYMENT"}, "version": {"N": "1"}})
    event_item = {"PK": {"S": pk}, "SK": {"S": "EVENT#00000000000000000001"},
                  "id": {"S": "evt_" + uuid.uuid4().hex}, "type": {"S": "payment." + payment["status"]},
                  "payment_id": {"S": payment_id}, "created_at": {"S": now}, "data": SERIALIZE(payment)}
    CLIENT.transact_write_items(TransactItems=[
        {"Put": {"TableName": TABLE, "Item": item, "ConditionExpression": "attribute_not_exists(PK)"}},
        {"Put": {"TableName": TABLE, "Item": event_item, "ConditionExpression": "attribute_not_exists(PK)"}},
    ])
    return _response(201, payment)


def get_payment(event, context):
    merchant = _merchant(event)
    if merchant is None:
        return _problem(401, "unauthenticated")
    payment_id = (event.get("pathParameters") or {}).get("id", "")
    item = CLIENT.get_item(TableName=TABLE, Key={"PK": {"S": f"MERCHANT#{merchant}#PAYMENT#{payment_id}"},
                                                 "SK": {"S": "PAYMENT"}}, ConsistentRead=True).get("Item")
    if not item:
        return _problem(404, "not_found")
    payment = {k: DESERIALIZE(v) for k, v in item.items() if k not in ("PK", "SK", "GSI1PK", "GSI1SK",
                                                                         "GSI2PK", "GSI2SK", "version", "merchant_id")}
    return _response(200, json.loads(json.dumps(payment, default=int)))
