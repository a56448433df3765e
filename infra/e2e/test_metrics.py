"""The functions' metrics (shared/src/metrics.rs): every invocation writes one CloudWatch
Embedded Metric Format line to its log, which CloudWatch Logs turns into metrics when deployed.
Here the log is the local stack's (infra/e2e.sh passes its path); each payment operation's line
is found by the request id the API answered with (`x-request-id`)."""

import json
import os
import time

import pytest

NAMESPACE = "PaymentsApi"


def emf_lines() -> list[dict]:
    """Every EMF document in the stack's log so far."""
    found = []
    with open(os.environ["E2E_STACK_LOG"], encoding="utf-8", errors="replace") as log:
        for line in log:
            start = line.find('{"')
            if start < 0 or '"_aws"' not in line:
                continue
            try:
                doc = json.loads(line[start:])
            except json.JSONDecodeError:
                continue
            if isinstance(doc, dict) and "_aws" in doc:
                found.append(doc)
    return found


def line_of(request_id: str) -> dict:
    """The metrics line of the invocation that answered `request_id` (written as it ends)."""
    deadline = time.monotonic() + 15
    while True:
        lines = [doc for doc in emf_lines() if doc.get("RequestId") == request_id]
        if lines or time.monotonic() > deadline:
            assert len(lines) == 1, f"{len(lines)} metrics lines for {request_id}"
            return lines[0]
        time.sleep(0.2)


def defined(doc: dict) -> dict[str, list[list[str]]]:
    """Metric name -> its dimension sets, checked against the EMF rules on the way."""
    aws = doc["_aws"]
    assert isinstance(aws["Timestamp"], int)
    metrics: dict[str, list[list[str]]] = {}
    for directive in aws["CloudWatchMetrics"]:
        assert directive["Namespace"] == NAMESPACE
        for dimensions in directive["Dimensions"]:
            for dimension in dimensions:
                assert isinstance(doc[dimension], str), dimension
        for metric in directive["Metrics"]:
            assert isinstance(doc[metric["Name"]], (int, float)), metric
            metrics.setdefault(metric["Name"], []).extend(directive["Dimensions"])
    return metrics


@pytest.mark.skipif("E2E_STACK_LOG" not in os.environ, reason="needs infra/e2e.sh's stack log")
def test_each_payment_operation_writes_its_metrics_line(api, key):
    created = api.post(
        "/payments",
        {"amount": 1500, "currency": "eur", "payment_method": "pm_card_visa", "capture_method": "manual"},
        headers={"Idempotency-Key": key},
    )
    assert created.status_code == 201, created.text
    pid = created.json()["id"]
    replayed = api.post(
        "/payments",
        {"amount": 1500, "currency": "eur", "payment_method": "pm_card_visa", "capture_method": "manual"},
        headers={"Idempotency-Key": key},
    )
    assert replayed.headers.get("idempotent-replayed") == "true"
    captured = api.post(f"/payments/{pid}/capture")
    assert captured.status_code == 200, captured.text
    refunded = api.post(f"/payments/{pid}/refunds", {"amount": 400})
    assert refunded.status_code == 201, refunded.text
    other = api.create(capture_method="manual")
    canceled = api.post(f"/payments/{other['id']}/cancel")
    assert canceled.status_code == 200, canceled.text
    listed = api.get("/payments?limit=2")
    fetched = api.get(f"/payments/{pid}")

    expected = {
        "create-payment": (created, "requires_capture"),
        "capture-payment": (captured, "succeeded"),
        "cancel-payment": (canceled, "canceled"),
    }
    for function, (response, outcome) in expected.items():
        doc = line_of(response.headers["x-request-id"])
        metrics = defined(doc)
        assert doc["Function"] == function
        assert (doc["Outcome"], doc["Payments"]) == (outcome, 1)
        assert ["Function", "Outcome", "Currency"] in metrics["Payments"]
        assert metrics["PaymentAmount"] == [["Function", "Outcome", "Currency"]]
        assert doc["ColdStart"] in (0, 1)

    assert line_of(created.headers["x-request-id"])["PaymentAmount"] == 1500
    doc = line_of(replayed.headers["x-request-id"])
    assert doc["IdempotencyReplays"] == 1 and "Payments" not in doc
    doc = line_of(refunded.headers["x-request-id"])
    assert (doc["Function"], doc["Refunds"], doc["RefundAmount"], doc["Currency"]) == (
        "create-refund", 1, 400, "EUR")
    assert defined(doc)["Refunds"] == [["Function", "Currency"]]
    for response, function in [(listed, "list-payments"), (fetched, "get-payment")]:
        doc = line_of(response.headers["x-request-id"])
        assert doc["Function"] == function and "ColdStart" in defined(doc)
