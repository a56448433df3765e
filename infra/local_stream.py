"""Stands in for Lambda's DynamoDB event source mapping in `make dev`: reads DynamoDB Local's
stream of the table, keeps what template.yaml's filter keeps (INSERTs of `EVENT#` items), and
invokes the relay through the Lambda Invoke API that `cargo lambda watch` serves, with the event
shape Lambda sends. Like the mapping, it honours partial batch responses (a batch is retried
from its first failed record), retries at most --max-retries times, and then writes the batch's
range to an on-failure file as Lambda's on-failure message names it (the deployed stack's SQS
queue) instead of dropping it silently; `infra/admin.sh webhooks redrive --file FILE` relays it
again.

    python3 infra/local_stream.py --function relay-webhook-events --port 9100 --table payments-local
"""

import argparse
import json
import os
import sys
import time
import urllib.error
import urllib.request

import boto3

FILTER_PREFIX = "EVENT#"


def log(message: str) -> None:
    print(f"[stream] {message}", file=sys.stderr, flush=True)


def lambda_record(record: dict, stream_arn: str, region: str) -> dict:
    change = dict(record["dynamodb"])
    created = change.get("ApproximateCreationDateTime")
    if created is not None and hasattr(created, "timestamp"):
        change["ApproximateCreationDateTime"] = created.timestamp()
    return {
        "eventID": record["eventID"],
        "eventName": record["eventName"],
        "eventVersion": record.get("eventVersion", "1.1"),
        "eventSource": "aws:dynamodb",
        "awsRegion": region,
        "dynamodb": change,
        "eventSourceARN": stream_arn,
    }


def failure_message(batch: list, shard_id: str, stream_arn: str) -> dict:
    """What Lambda's on-failure destination gets for a batch it gave up on: not the records, the
    range of the shard they are in (`payments-admin webhooks redrive` reads it back)."""
    first, last = batch[0]["dynamodb"], batch[-1]["dynamodb"]

    def arrival(change):
        at = change.get("ApproximateCreationDateTime")
        return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(at)) if at is not None else None

    return {
        "version": "1.0",
        "timestamp": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "requestContext": {"condition": "RetryAttemptsExhausted"},
        "DDBStreamBatchInfo": {
            "shardId": shard_id,
            "startSequenceNumber": first["SequenceNumber"],
            "endSequenceNumber": last["SequenceNumber"],
            "approximateArrivalOfFirstRecord": arrival(first),
            "approximateArrivalOfLastRecord": arrival(last),
            "batchSize": len(batch),
            "streamArn": stream_arn,
        },
    }


def wanted(record: dict) -> bool:
    sk = record["dynamodb"].get("Keys", {}).get("SK", {}).get("S", "")
    return record["eventName"] == "INSERT" and sk.startswith(FILTER_PREFIX)


def invoke(port: int, function: str, records: list, timeout: float):
    """The relay's answer: the sequence numbers it failed, or None if the invocation failed."""
    url = f"http://127.0.0.1:{port}/2015-03-31/functions/{function}/invocations"
    payload = json.dumps({"Records": records}, default=str).encode()
    request = urllib.request.Request(url, data=payload, method="POST")
    request.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            body = response.read().decode("utf-8", "replace")
            if response.headers.get("X-Amz-Function-Error"):
                log(f"{function} failed: {body}")
                return None
    except (urllib.error.URLError, OSError) as err:
        log(f"{function} not reachable: {err}")
        return None
    try:
        answer = json.loads(body) or {}
    except json.JSONDecodeError:
        return None
    return [f["itemIdentifier"] for f in answer.get("batchItemFailures") or []]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--function", required=True)
    parser.add_argument("--port", type=int, required=True, help="cargo lambda watch's port")
    parser.add_argument("--table", required=True)
    parser.add_argument("--batch-size", type=int, default=10)
    parser.add_argument("--poll-seconds", type=float, default=0.25)
    parser.add_argument("--max-retries", type=int, default=10)
    parser.add_argument("--failures-file", default=".dev/webhook-relay-failures.jsonl")
    parser.add_argument("--timeout", type=float, default=120.0)
    args = parser.parse_args()

    endpoint = os.environ["AWS_ENDPOINT_URL_DYNAMODB"]
    region = os.environ.get("AWS_REGION", "us-east-1")
    dynamodb = boto3.client("dynamodb", endpoint_url=endpoint, region_name=region)
    streams = boto3.client("dynamodbstreams", endpoint_url=endpoint, region_name=region)
    table = dynamodb.describe_table(TableName=args.table)["Table"]
    stream_arn = table.get("LatestStreamArn")
    if not stream_arn:
        log(f"error: table {args.table} has no stream (made before webhooks?); "
            "delete it or restart DynamoDB Local, which keeps tables in memory")
        return 1
    log(f"relaying {stream_arn} to {args.function}")

    iterators = {}  # shard id -> iterator (None once the shard is closed and read to its end)
    pending = {}  # shard id -> records waiting for the relay (a batch being retried)
    retries = {}
    while True:
        for shard in streams.describe_stream(StreamArn=stream_arn)["StreamDescription"]["Shards"]:
            shard_id = shard["ShardId"]
            if shard_id not in iterators:
                iterators[shard_id] = streams.get_shard_iterator(
                    StreamArn=stream_arn, ShardId=shard_id, ShardIteratorType="TRIM_HORIZON"
                )["ShardIterator"]
        busy = False
        for shard_id, iterator in list(iterators.items()):
            batch = pending.get(shard_id, [])
            if not batch and iterator is not None:
                answer = streams.get_records(ShardIterator=iterator, Limit=args.batch_size)
                iterators[shard_id] = answer.get("NextShardIterator")
                batch = [lambda_record(r, stream_arn, region) for r in answer["Records"] if wanted(r)]
                busy = busy or bool(answer["Records"])
            if not batch:
                continue
            busy = True
            failed = invoke(args.port, args.function, batch, args.timeout)
            if failed == []:
                pending.pop(shard_id, None)
                retries.pop(shard_id, None)
                continue
            # Retried from the first failed record (or whole, if the invocation failed).
            if failed is not None:
                first = next(
                    (i for i, r in enumerate(batch) if r["dynamodb"]["SequenceNumber"] in failed), 0
                )
                batch = batch[first:]
            retries[shard_id] = retries.get(shard_id, 0) + 1
            if retries[shard_id] > args.max_retries:
                os.makedirs(os.path.dirname(args.failures_file) or ".", exist_ok=True)
                with open(args.failures_file, "a") as out:
                    out.write(json.dumps(failure_message(batch, shard_id, stream_arn)) + "\n")
                log(f"gave up on {len(batch)} records after {args.max_retries} retries; "
                    f"their range is in {args.failures_file} "
                    f"(infra/admin.sh webhooks redrive --file {args.failures_file})")
                pending.pop(shard_id, None)
                retries.pop(shard_id, None)
            else:
                pending[shard_id] = batch
                time.sleep(min(2 ** retries[shard_id] * 0.1, 5))
        if not busy:
            time.sleep(args.poll_seconds)


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt:
        sys.exit(130)
