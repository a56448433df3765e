"""Webhook deliveries over the local stack (../shared/API.md, "Webhooks"): a payment made over
HTTP reaches a real receiver on 127.0.0.1 through the table's stream, the relay and the retry
sweep, and every delivery is verified with the `standardwebhooks` library from PyPI, an
implementation independent of ours (infra/webhook_receiver.py).

Negative checks ("gets nothing") use a witness: an enabled endpoint of the same merchant. The
relay creates every delivery of an event in the same invocation, all due at once, and the
dispatcher starts every due one on its next pass (a second apart); so a moment after the
witness has an event (`PASSES`), any delivery of it to the endpoint under test would have been
sent too."""

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import boto3

import pytest
from conftest import new_merchant
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from local_stream import failure_message, lambda_record  # noqa: E402
from webhook_receiver import Receiver  # noqa: E402

# Generous for a loaded machine; what the contract bounds (5 s) is measured in the README run.
ARRIVAL = 30.0
# Two of the dispatcher's passes (a second apart): what a negative check waits after its witness.
PASSES = 2.0


def wait_for(check, what, timeout=ARRIVAL):
    deadline = time.monotonic() + timeout
    while True:
        found = check()
        if found:
            return found
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.1)


@pytest.fixture
def receivers():
    started = []

    def start(**kw):
        receiver = Receiver(**kw).start()
        started.append(receiver)
        return receiver

    yield start
    for receiver in started:
        receiver.stop()


def register(merchant, receiver, events=("*",)):
    created = merchant.post("/webhook_endpoints", {"url": receiver.url, "enabled_events": list(events)})
    assert created.status_code == 201, created.text
    endpoint = created.json()
    receiver.secrets.append(endpoint["secret"])
    return endpoint


def deliveries_of(receiver, payment_id):
    return [d for d in receiver.received() if (d["body"] or {}).get("payment_id") == payment_id]


def test_a_payment_is_delivered_signed_as_get_event_shows_it(merchant, receivers):
    receiver = receivers()
    endpoint = register(merchant, receiver)
    started = time.monotonic()
    payment = merchant.create()
    [got] = wait_for(lambda: deliveries_of(receiver, payment["id"]), "the first delivery")
    print(f"first attempt {time.monotonic() - started:.2f} s after the create returned")
    assert got["verified"], got
    event = merchant.get(f"/events/{got['webhook_id']}").json()
    assert got["body"] == event
    assert (event["type"], event["data"]) == ("payment.succeeded", payment)
    log = wait_for(
        lambda: [d for d in merchant.get(f"/webhook_endpoints/{endpoint['id']}/deliveries").json()["data"]
                 if d["status"] == "succeeded"],
        "the delivery log",
    )
    assert log[0]["event_id"] == event["id"]
    assert (log[0]["attempts"], log[0]["last_response_status"], log[0]["next_attempt_at"]) == (1, 204, None)
    only = merchant.get(f"/webhook_endpoints/{endpoint['id']}/deliveries?status=failed").json()
    assert only["data"] == []


def test_a_receiver_that_fails_once_gets_the_retry_about_5_s_later_with_the_same_id(merchant, receivers):
    receiver = receivers(script=[500])
    endpoint = register(merchant, receiver)
    payment = merchant.create()
    first, second = wait_for(lambda: (d := deliveries_of(receiver, payment["id"])) and len(d) >= 2 and d,
                             "the retry")
    assert first["webhook_id"] == second["webhook_id"]
    assert (first["answered"], second["answered"]) == (500, 204)
    assert first["verified"] and second["verified"]
    gap = int(second["timestamp"]) - int(first["timestamp"])
    assert 4 <= gap <= 15, f"retried {gap} s after the failure"
    log = merchant.get(f"/webhook_endpoints/{endpoint['id']}/deliveries").json()["data"]
    assert (log[0]["status"], log[0]["attempts"]) == ("succeeded", 2)


def test_410_disables_and_a_disabled_or_deleted_endpoint_gets_nothing(merchant, receivers):
    witness = receivers()
    register(merchant, witness)
    gone = receivers(status=410)
    gone_endpoint = register(merchant, gone)
    first = merchant.create()
    wait_for(lambda: deliveries_of(gone, first["id"]), "the 410 answer")
    path = f"/webhook_endpoints/{gone_endpoint['id']}"
    wait_for(lambda: merchant.get(path).json()["status"] == "disabled", "the endpoint disabled")

    deleted = receivers()
    deleted_endpoint = register(merchant, deleted)
    assert merchant.call("DELETE", f"/webhook_endpoints/{deleted_endpoint['id']}").status_code == 200

    second = merchant.create()
    wait_for(lambda: deliveries_of(witness, second["id"]), "the witness's delivery")
    time.sleep(PASSES)
    assert deliveries_of(gone, second["id"]) == []
    assert deliveries_of(deleted, second["id"]) == []
    log = merchant.get(f"{path}/deliveries").json()["data"]
    assert [d["event_id"] for d in log] == [deliveries_of(gone, first["id"])[0]["webhook_id"]]
    assert (log[0]["status"], log[0]["last_response_status"]) == ("failed", 410)

    # Enabled again, it receives.
    assert merchant.post(path, {"status": "enabled"}).status_code == 200
    third = merchant.create()
    wait_for(lambda: deliveries_of(gone, third["id"]), "a delivery after re-enabling")


def test_a_failed_delivery_resent_succeeds_once_its_endpoint_is_enabled(merchant, api, key, receivers):
    receiver = receivers(status=410)
    endpoint = register(merchant, receiver)
    payment = merchant.create()
    wait_for(lambda: deliveries_of(receiver, payment["id"]), "the 410 answer")
    path = f"/webhook_endpoints/{endpoint['id']}"
    [failed] = wait_for(lambda: merchant.get(f"{path}/deliveries?status=failed").json()["data"],
                        "the failed delivery")
    resend = f"{path}/deliveries/{failed['id']}/retry"
    refused = merchant.post(resend)
    assert (refused.status_code, refused.json()["code"]) == (409, "invalid_state"), refused.text
    assert new_merchant(api).post(resend).status_code == 404, "another merchant's"

    assert merchant.post(path, {"status": "enabled"}).status_code == 200
    receiver.status = 204
    resent = merchant.post(resend, headers={"Idempotency-Key": key})
    assert resent.status_code == 200, resent.text
    assert (resent.json()["status"], resent.json()["attempts"]) == ("pending", 1)
    got = wait_for(lambda: [d for d in deliveries_of(receiver, payment["id"]) if d["answered"] == 204],
                   "the resent delivery")
    assert got[0]["verified"] and got[0]["webhook_id"] == failed["event_id"]
    done = wait_for(lambda: [d for d in merchant.get(f"{path}/deliveries").json()["data"]
                             if d["status"] == "succeeded"], "the delivery succeeded")
    assert (done[0]["id"], done[0]["attempts"], done[0]["last_response_status"]) == (failed["id"], 2, 204)
    # The same key again: the first answer, and no attempt more.
    again = merchant.post(resend, headers={"Idempotency-Key": key})
    assert (again.status_code, again.headers.get("idempotent-replayed")) == (200, "true")
    assert again.json() == resent.json()
    time.sleep(PASSES)
    assert len(deliveries_of(receiver, payment["id"])) == 2


def test_after_rotation_both_secrets_verify(merchant, receivers):
    receiver = receivers()
    endpoint = register(merchant, receiver)
    old = endpoint["secret"]
    rotated = merchant.post(f"/webhook_endpoints/{endpoint['id']}/rotate_secret").json()
    new = rotated["secret"]
    receiver.secrets.append(new)
    payment = merchant.create()
    [got] = wait_for(lambda: deliveries_of(receiver, payment["id"]), "a delivery after rotation")
    assert len(got["signature"].split(" ")) == 2
    headers = {"webhook-id": got["webhook_id"], "webhook-timestamp": got["timestamp"],
               "webhook-signature": got["signature"]}
    body = got["raw"]
    assert merchant.get(f"/events/{got['webhook_id']}").json() == got["body"]
    for secret in (old, new):
        Webhook(secret).verify(body, headers)  # raises if it does not verify
    stranger = "whsec_" + "A" * 43 + "="
    with pytest.raises(WebhookVerificationError):
        Webhook(stranger).verify(body, headers)


def test_another_merchants_events_never_reach_an_endpoint(merchant, api, receivers):
    other = new_merchant(api)
    mine = receivers()
    register(merchant, mine)
    theirs = receivers()
    register(other, theirs)
    their_payment = other.create()
    my_payment = merchant.create()
    wait_for(lambda: deliveries_of(theirs, their_payment["id"]), "their delivery")
    wait_for(lambda: deliveries_of(mine, my_payment["id"]), "my delivery")
    time.sleep(PASSES)
    assert deliveries_of(mine, their_payment["id"]) == []
    assert deliveries_of(theirs, my_payment["id"]) == []
    # Their endpoint's log is not mine to read.
    their_endpoint = other.get("/webhook_endpoints").json()["data"][0]["id"]
    assert merchant.get(f"/webhook_endpoints/{their_endpoint}/deliveries").status_code == 404


def stream_range_of(payment_id):
    """The on-failure message Lambda would send for the stream record of the payment's first
    event (its range: that one record), read from DynamoDB Local's stream as the relay's
    stand-in reads it."""
    endpoint, region = os.environ["AWS_ENDPOINT_URL_DYNAMODB"], os.environ.get("AWS_REGION", "us-east-1")
    dynamodb = boto3.client("dynamodb", endpoint_url=endpoint, region_name=region)
    streams = boto3.client("dynamodbstreams", endpoint_url=endpoint, region_name=region)
    arn = dynamodb.describe_table(TableName=os.environ["TABLE_NAME"])["Table"]["LatestStreamArn"]
    for shard in streams.describe_stream(StreamArn=arn)["StreamDescription"]["Shards"]:
        iterator = streams.get_shard_iterator(StreamArn=arn, ShardId=shard["ShardId"],
                                              ShardIteratorType="TRIM_HORIZON")["ShardIterator"]
        while iterator:
            page = streams.get_records(ShardIterator=iterator, Limit=1000)
            for record in page["Records"]:
                keys = record["dynamodb"]["Keys"]
                if keys["PK"]["S"].endswith(payment_id) and keys["SK"]["S"].startswith("EVENT#"):
                    return failure_message([lambda_record(record, arn, region)], shard["ShardId"], arn)
            iterator = page.get("NextShardIterator") if page["Records"] else None
    raise AssertionError(f"no stream record of {payment_id}'s event")


def test_the_admin_cli_redrives_a_range_the_relay_gave_up_on_making_each_delivery_once(merchant, receivers):
    receiver = receivers()
    register(merchant, receiver)
    payment = merchant.create()
    wait_for(lambda: deliveries_of(receiver, payment["id"]), "the delivery")
    # As if the relay had given up on that record: its range, as the destination holds it.
    with tempfile.NamedTemporaryFile("w", suffix=".jsonl", delete=False) as out:
        out.write(json.dumps(stream_range_of(payment["id"])) + "\n")
    try:
        ran = subprocess.run(["bash", "infra/admin.sh", "webhooks", "redrive", "--file", out.name],
                             capture_output=True, text=True, timeout=300)
    finally:
        os.unlink(out.name)
    assert ran.returncode == 0, ran.stderr
    summary = json.loads(ran.stdout)
    assert (summary["messages"], summary["records"], summary["failed_records"]) == (1, 1, 0), summary
    # Relayed again, but the delivery exists: nothing is sent twice.
    time.sleep(PASSES)
    assert len(deliveries_of(receiver, payment["id"])) == 1


def test_a_replay_delivers_exactly_the_ranges_subscribed_events_again(merchant, api, key, receivers):
    other = new_merchant(api)
    receiver = receivers()
    endpoint = register(merchant, receiver, events=("payment.succeeded",))
    before = merchant.create()
    first = merchant.create()
    manual = merchant.create(capture_method="manual")  # payment.requires_capture: not subscribed
    theirs = other.create()  # another merchant's, inside the range
    last = merchant.create()
    after = merchant.create()
    live = [before, first, last, after]
    for p in live:
        wait_for(lambda p=p: deliveries_of(receiver, p["id"]), "the live delivery")
    path = f"/webhook_endpoints/{endpoint['id']}"
    # [first, after): first's, manual's, theirs' and last's events; after's is the range's end.
    body = {"since": first["created_at"], "until": after["created_at"]}
    started = merchant.post(f"{path}/replay", body, headers={"Idempotency-Key": key})
    assert started.status_code == 202, started.text
    replay = started.json()
    assert (replay["object"], replay["status"], replay["events"]) == ("webhook_replay", "running", 0)
    assert (replay["since"], replay["until"]) == (first["created_at"], after["created_at"])
    again = merchant.post(f"{path}/replay", body, headers={"Idempotency-Key": key})
    assert (again.status_code, again.headers.get("idempotent-replayed")) == (202, "true")
    assert again.json()["id"] == replay["id"]

    progress = f"{path}/replays/{replay['id']}"
    done = wait_for(lambda: (r := merchant.get(progress).json())["status"] == "done" and r, "the replay done")
    assert done["events"] == 2, done
    wait_for(lambda: len(deliveries_of(receiver, last["id"])) == 2, "the replayed deliveries")
    time.sleep(PASSES)
    counts = {p["id"]: len(deliveries_of(receiver, p["id"])) for p in live}
    assert counts == {before["id"]: 1, first["id"]: 2, last["id"]: 2, after["id"]: 1}, counts
    assert deliveries_of(receiver, manual["id"]) == [] and deliveries_of(receiver, theirs["id"]) == []
    replayed = deliveries_of(receiver, first["id"])
    assert replayed[0]["webhook_id"] == replayed[1]["webhook_id"], "the same webhook-id: the event's"
    assert all(d["verified"] for d in replayed)
    log = merchant.get(f"{path}/deliveries").json()["data"]
    assert len(log) == 6 and len({d["id"] for d in log}) == 6, "each replayed event a new delivery"

    # Another merchant can neither replay to this endpoint nor see the replay.
    assert other.post(f"{path}/replay", body).status_code == 404
    assert other.get(progress).status_code == 404
    refused = merchant.post(f"{path}/replay", {"since": after["created_at"], "until": first["created_at"]})
    assert (refused.status_code, refused.json()["param"]) == (400, "since"), refused.text
