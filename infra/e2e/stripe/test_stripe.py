"""The payments API with Processor=stripe (`make dev PROCESSOR=stripe`), end to end over HTTP:
every payment goes through the Stripe connector to localstripe, and each test reads
localstripe's own API to check that Stripe holds exactly what our payment says.

Run by infra/e2e.sh with E2E_PROCESSOR=stripe, which starts the stack with PROCESSOR=stripe and
sets E2E_LOCALSTRIPE_URL; the sandbox run leaves this folder out."""

import concurrent.futures
import os
import time

import requests

# The key `make dev PROCESSOR=stripe` puts in the local Secrets Manager (localstripe takes any).
STRIPE_KEY = "sk_test_local"


def stripe(method: str, path: str, form=None):
    base = os.environ["E2E_LOCALSTRIPE_URL"]
    sent = {"data": form} if method == "POST" else {"params": form}
    response = requests.request(method, base + path, auth=(STRIPE_KEY, ""), timeout=30, **sent)
    assert response.status_code == 200, response.text
    return response.json()


def intent_of(payment) -> dict:
    assert payment["processor"]["name"] == "stripe", payment
    reference = payment["processor"]["reference"]
    assert reference.startswith("pi_"), payment
    intent = stripe("GET", f"/v1/payment_intents/{reference}")
    assert intent["metadata"]["payment_id"] == payment["id"]
    return intent


def refunds_at_stripe(payment) -> list:
    """The intent's refunds that are ours (localstripe releases the uncaptured rest of a partial
    capture as a refund of its own, without our refund_id)."""
    listed = stripe("GET", "/v1/refunds", {"payment_intent": payment["processor"]["reference"], "limit": 100})
    return [r for r in listed["data"] if r["status"] == "succeeded" and r["metadata"].get("refund_id")]


def wait_for(api, payment_id: str, status: str, seconds: float = 30):
    deadline = time.monotonic() + seconds
    while True:
        payment = api.get(f"/payments/{payment_id}").json()
        if payment["status"] == status or time.monotonic() > deadline:
            return payment
        time.sleep(0.5)


def test_an_automatic_payment_is_one_succeeded_intent_for_the_same_amount(api):
    payment = api.create(amount=2500, currency="eur")
    assert (payment["status"], payment["amount_captured"]) == ("succeeded", 2500)
    intent = intent_of(payment)
    assert (intent["status"], intent["amount"], intent["currency"]) == ("succeeded", 2500, "eur")


def test_a_manual_payment_is_held_then_partially_captured(api):
    payment = api.create(amount=3000, capture_method="manual")
    assert (payment["status"], payment["amount_capturable"]) == ("requires_capture", 3000)
    assert intent_of(payment)["status"] == "requires_capture"
    captured = api.post(f"/payments/{payment['id']}/capture", {"amount": 1800})
    assert captured.status_code == 200, captured.text
    assert (captured.json()["status"], captured.json()["amount_captured"]) == ("succeeded", 1800)
    assert intent_of(payment)["status"] == "succeeded"
    # What localstripe holds as captured: the charge less the release of the uncaptured rest.
    intent = stripe("GET", f"/v1/payment_intents/{payment['processor']['reference']}", {"expand[]": "latest_charge"})
    charge = intent["latest_charge"]
    released = sum(r["amount"] for r in charge["refunds"]["data"] if not r["metadata"].get("refund_id"))
    assert charge["amount"] - released == 1800


def test_a_decline_is_a_failed_payment_with_stripes_code(api):
    payment = api.create(payment_method="pm_card_chargeCustomerFail")
    assert payment["status"] == "failed"
    assert payment["failure"]["code"], payment
    assert intent_of(payment)["status"] == "requires_payment_method"


def test_three_d_secure_waits_for_the_customer_and_stripes_event_settles_it(api):
    method = stripe(
        "POST",
        "/v1/payment_methods",
        {"type": "card", "card[number]": "4000002500003155", "card[exp_month]": "12", "card[exp_year]": "2030", "card[cvc]": "123"},
    )
    payment = api.create(amount=1200, payment_method=method["id"])
    assert payment["status"] == "requires_action", payment
    assert payment["next_action"]["type"] == "use_stripe_sdk", payment
    secret = payment["next_action"]["client_secret"]
    reference = payment["processor"]["reference"]
    stripe("POST", f"/v1/payment_intents/{reference}/_authenticate", {"client_secret": secret, "success": "true"})
    # localstripe sends payment_intent.succeeded to our /processor_events/stripe a second later.
    settled = wait_for(api, payment["id"], "succeeded")
    assert (settled["status"], settled["amount_captured"]) == ("succeeded", 1200), settled
    events = api.get(f"/payments/{payment['id']}/events").json()["data"]
    assert [e["type"] for e in events].count("payment.succeeded") == 1


def test_a_canceled_authorization_is_canceled_at_stripe(api):
    payment = api.create(capture_method="manual")
    canceled = api.post(f"/payments/{payment['id']}/cancel", {})
    assert canceled.status_code == 200, canceled.text
    assert canceled.json()["status"] == "canceled"
    assert intent_of(payment)["status"] == "canceled"


def test_partial_and_multiple_refunds_agree_with_stripe(api):
    payment = api.create(amount=5000)
    for amount in (1000, 1500):
        refund = api.post(f"/payments/{payment['id']}/refunds", {"amount": amount})
        assert refund.status_code == 201, refund.text
        assert refund.json()["status"] == "succeeded"
    after = api.get(f"/payments/{payment['id']}").json()
    assert after["amount_refunded"] == 2500
    at_stripe = refunds_at_stripe(payment)
    assert sorted(r["amount"] for r in at_stripe) == [1000, 1500]
    ours = {r["id"] for r in api.get(f"/payments/{payment['id']}/refunds").json()["data"]}
    assert {r["metadata"]["refund_id"] for r in at_stripe} == ours


def test_ten_concurrent_refunds_of_a_fifth_make_exactly_five_at_stripe(api):
    payment = api.create(amount=5000)

    def refund(_):
        return api.post(f"/payments/{payment['id']}/refunds", {"amount": 1000})

    with concurrent.futures.ThreadPoolExecutor(max_workers=10) as pool:
        answers = list(pool.map(refund, range(10)))
    statuses = sorted(a.status_code for a in answers)
    assert statuses.count(201) == 5, [(a.status_code, a.text) for a in answers]
    assert all(s in (201, 400, 409) for s in statuses), statuses
    assert api.get(f"/payments/{payment['id']}").json()["amount_refunded"] == 5000
    at_stripe = refunds_at_stripe(payment)
    assert (len(at_stripe), sum(r["amount"] for r in at_stripe)) == (5, 5000)
