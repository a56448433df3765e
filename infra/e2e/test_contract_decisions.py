"""Where Schemathesis found the spec and the code (or the local stack) disagreeing, what was
decided (openapi.yaml says each), over HTTP against the local stack."""

import http.client
import json
from urllib.parse import urlparse

import requests


def raw_post(api, path: str, body: bytes, headers: dict) -> tuple[int, dict, dict]:
    """A POST with bytes exactly as given (requests would re-encode them)."""
    url = urlparse(api.base)
    connection = http.client.HTTPConnection(url.hostname, url.port, timeout=60)
    connection.putrequest("POST", path)
    sent = {"Authorization": f"Bearer {api.key}", "Content-Length": str(len(body)), **headers}
    for name, value in sent.items():
        connection.putheader(name, value)
    connection.endheaders(body)
    response = connection.getresponse()
    payload = response.read()
    return response.status, dict(response.getheaders()), json.loads(payload)


def test_an_idempotency_key_that_is_not_ascii_is_400_not_a_router_500(api):
    payment = api.create(capture_method="manual")
    status, headers, body = raw_post(
        api,
        f"/payments/{payment['id']}/capture",
        b"{}",
        {"Content-Type": "application/json", "Idempotency-Key": b"\xd7\xf8\x9b"},
    )
    assert (status, body["code"]) == (400, "invalid_idempotency_key"), body
    assert headers["content-type"] == "application/problem+json"
    assert api.get(f"/payments/{payment['id']}").json()["status"] == "requires_capture"


def test_a_body_that_is_not_utf8_is_invalid_json(api):
    status, _, body = raw_post(api, "/payments", b'{"amount":\xd7}', {"Content-Type": "application/json"})
    assert (status, body["code"]) == (400, "invalid_json"), body
    status, _, body = raw_post(api, "/payments", b"\xd7\xf8", {"Content-Type": "text/plain"})
    assert (status, body["code"]) == (415, "unsupported_media_type"), body


def test_an_amount_with_a_zero_fraction_is_that_integer(api):
    response = api.post("/payments", {"amount": 459749.0, "currency": "usd", "payment_method": "pm_card_visa"})
    assert (response.status_code, response.json()["amount"]) == (201, 459749)


def test_only_iso_codes_in_circulation_are_currencies(api):
    for code in ["AAA", "XAU", "HRK"]:
        response = api.post("/payments", {"amount": 100, "currency": code, "payment_method": "pm_card_visa"})
        assert (response.status_code, response.json()["param"]) == (400, "currency"), code
    assert api.create(currency="kWd")["currency"] == "KWD"


def test_an_empty_cursor_is_invalid(api):
    response = api.get("/payments?cursor=")
    assert (response.status_code, response.json()["code"]) == (400, "invalid_cursor")


def test_null_is_the_same_as_leaving_a_field_out(api):
    payment = api.create(metadata=None, capture_method=None, description=None)
    assert (payment["metadata"], payment["capture_method"]) == ({}, "automatic")
    refund = api.post(f"/payments/{payment['id']}/refunds", {"amount": None, "reason": None, "metadata": None})
    assert (refund.status_code, refund.json()["amount"]) == (201, 2500)


def test_an_undeclared_method_is_404_like_api_gateway(api):
    response = requests.request("TRACE", api.base + "/health", timeout=60)
    assert (response.status_code, response.json()) == (404, {"message": "Not Found"})


def test_an_unknown_route_is_api_gateways_404_and_names_no_function(api):
    for method, path in [("GET", "/nope"), ("POST", "/payments/pay_x/refund"), ("DELETE", "/payments"),
                         ("GET", "/relay-webhook-events"),
                         ("POST", "/2015-03-31/functions/expire-authorizations/invocations"),
                         ("GET", "/lambda-url/get-payment/payments")]:
        response = requests.request(method, api.base + path, timeout=60,
                                    headers={"Authorization": f"Bearer {api.key}"})
        assert response.status_code == 404, (method, path, response.text)
        assert response.headers["content-type"] == "application/json", (method, path)
        assert response.json() == {"message": "Not Found"}, (method, path, response.text)
        assert "payment" not in response.text and "webhook" not in response.text


def test_a_chunked_body_arrives_whole(api):
    url = urlparse(api.base)
    connection = http.client.HTTPConnection(url.hostname, url.port, timeout=60)
    body = json.dumps({"amount": 2500, "currency": "usd", "payment_method": "pm_card_visa"}).encode()
    chunks = iter([body[:10], body[10:]])
    connection.request(
        "POST",
        "/payments",
        body=chunks,
        headers={"Authorization": f"Bearer {api.key}", "Content-Type": "application/json"},
        encode_chunked=True,
    )
    response = connection.getresponse()
    payment = json.loads(response.read())
    assert (response.status, payment["amount"]) == (201, 2500), payment
