"""The README's examples ("Using the local API", "Retries are safe"), run over HTTP against the
stack `make dev` runs: every route, its documented success and its documented refusals."""

import requests


def problem(response, status: int, code: str, param=None):
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/problem+json"
    body = response.json()
    assert body["code"] == code, body
    assert body.get("param") == param, body
    assert body["request_id"] == response.headers["x-request-id"]
    return body


def test_health_needs_no_key(api):
    response = requests.get(api.base + "/health", timeout=60)
    assert response.status_code == 200
    assert response.json()["status"] == "ok"


def test_every_other_route_needs_a_key(api):
    for method, path in [
        ("GET", "/payments"),
        ("POST", "/payments"),
        ("GET", "/payments/pay_0"),
        ("GET", "/payments/pay_0/events"),
    ]:
        response = requests.request(method, api.base + path, timeout=60)
        problem(response, 401, "unauthenticated")
        assert response.headers["www-authenticate"] == "Bearer"
    problem(api.get("/payments", key="sk_" + "0" * 48), 401, "unauthenticated")


def test_create_automatic_manual_and_declined(api):
    paid = api.create(description="Order #1042", metadata={"order_id": "1042"})
    assert (paid["status"], paid["amount_captured"], paid["currency"]) == ("succeeded", 2500, "USD")
    assert paid["metadata"] == {"order_id": "1042"}
    manual = api.create(amount=900, currency="eur", capture_method="manual")
    assert (manual["status"], manual["amount_capturable"]) == ("requires_capture", 900)
    declined = api.create(amount=100, payment_method="pm_card_declined")
    assert (declined["status"], declined["failure"]["code"]) == ("failed", "card_declined")

    got = api.get(f"/payments/{paid['id']}")
    assert got.status_code == 200 and got.json() == paid
    problem(api.get("/payments/pay_0193nope"), 404, "not_found")


def test_list_pages_with_cursor_and_status_filter(api):
    made = [api.create(amount=100 + i)["id"] for i in range(3)]
    first = api.get("/payments?limit=2").json()
    assert first["object"] == "list" and len(first["data"]) == 2 and first["has_more"]
    second = api.get(f"/payments?limit=2&cursor={first['next_cursor']}").json()
    seen = [p["id"] for p in first["data"] + second["data"]]
    assert seen[:3] == made[::-1], "newest first, each once"
    failed = api.get("/payments?status=failed").json()["data"]
    assert all(p["status"] == "failed" for p in failed)
    problem(api.get("/payments?cursor=forged"), 400, "invalid_cursor", "cursor")
    problem(api.get("/payments?limit=101"), 400, "validation_error", "limit")


def test_capture_cancel_refund_and_the_trail(api):
    manual = api.create(amount=2500, capture_method="manual")
    pid = manual["id"]
    captured = api.post(f"/payments/{pid}/capture", {"amount": 2000})
    assert captured.status_code == 200, captured.text
    assert (captured.json()["status"], captured.json()["amount_captured"]) == ("succeeded", 2000)
    problem(api.post(f"/payments/{pid}/capture"), 409, "invalid_state")

    part = api.post(f"/payments/{pid}/refunds", {"amount": 100, "reason": "requested_by_customer"})
    assert part.status_code == 201, part.text
    assert (part.json()["amount"], part.json()["reason"]) == (100, "requested_by_customer")
    rest = api.post(f"/payments/{pid}/refunds")
    assert (rest.status_code, rest.json()["amount"]) == (201, 1900)
    problem(api.post(f"/payments/{pid}/refunds", {"amount": 1}), 409, "invalid_state")

    refunds = api.get(f"/payments/{pid}/refunds?limit=10").json()["data"]
    assert [r["amount"] for r in refunds] == [1900, 100], "newest first"
    trail = api.get(f"/payments/{pid}/events").json()["data"]
    # Each refund: its reservation (pending), then the processor's answer settling it.
    assert [(e["type"], e["data"].get("refund", {}).get("status")) for e in trail] == [
        ("payment.requires_capture", None),
        ("payment.succeeded", None),
        ("payment.refunded", "pending"),
        ("payment.refund_updated", "succeeded"),
        ("payment.refunded", "pending"),
        ("payment.refund_updated", "succeeded"),
    ]
    assert trail[-1]["data"]["amount_refunded"] == 2000
    assert trail[-1]["data"]["refund"] == rest.json()

    other = api.create(amount=700, capture_method="manual")
    canceled = api.post(f"/payments/{other['id']}/cancel", {"cancellation_reason": "requested_by_customer"})
    assert canceled.status_code == 200, canceled.text
    assert (canceled.json()["status"], canceled.json()["amount_capturable"]) == ("canceled", 0)
    problem(api.post(f"/payments/{other['id']}/capture"), 409, "invalid_state")

    big = api.create(amount=500)
    problem(api.post(f"/payments/{big['id']}/refunds", {"amount": 501}), 400, "amount_too_large", "amount")


def test_bad_input_is_a_problem(api):
    body = problem(
        api.post("/payments", {"amount": 1.5, "currency": "usd", "payment_method": "pm_card_visa"}),
        400,
        "validation_error",
        "amount",
    )
    assert body["type"] == "about:blank" and body["status"] == 400
    problem(api.post("/payments", raw="{not json"), 400, "invalid_json")
    problem(
        api.post("/payments", {"amount": 1, "currency": "usd", "payment_method": "pm_card_visa", "x": 1}),
        400,
        "unknown_field",
        "x",
    )
    problem(
        api.call("POST", "/payments", raw="amount=1", headers={"Content-Type": "text/plain"}),
        415,
        "unsupported_media_type",
    )


def test_idempotency_key_replays_and_refuses_reuse(api, key):
    body = {"amount": 2500, "currency": "usd", "payment_method": "pm_card_visa"}
    first = api.post("/payments", body, headers={"Idempotency-Key": key})
    assert first.status_code == 201 and "idempotent-replayed" not in first.headers
    again = api.post(
        "/payments",
        raw='{ "payment_method": "pm_card_visa", "currency": "usd", "amount": 2500 }',
        headers={"Idempotency-Key": key},
    )
    assert again.status_code == 201
    assert again.headers["idempotent-replayed"] == "true"
    assert again.json() == first.json()
    problem(
        api.post("/payments", {**body, "amount": 2501}, headers={"Idempotency-Key": key}),
        422,
        "idempotency_key_reused",
    )
    problem(api.post("/payments", body, headers={"Idempotency-Key": "tab\there"}), 400, "invalid_idempotency_key")
