"""Asynchronous outcomes over the local stack (../shared/API.md, "Asynchronous outcomes",
"Sandbox"): a payment that needs its customer is created `requires_action`, the customer answers
the sandbox's authentication page in a browser's way (GET the page, POST its form), the sandbox
reports the answer as a signed processor event to `/processor_events/sandbox`, and the payment
moves on — with its events and the merchant's webhooks for each step."""

import re
import time

import requests
from test_webhooks import deliveries_of, receivers, register, wait_for  # noqa: F401  (fixture)


def authenticate(merchant, receivers, capture_method, outcome, return_url=None):
    receiver = receivers()
    register(merchant, receiver)
    fields = {"payment_method": "pm_card_authentication_required", "capture_method": capture_method}
    if return_url:
        fields["return_url"] = return_url
    payment = merchant.create(**fields)
    assert payment["status"] == "requires_action", payment
    assert payment["processor"]["name"] == "sandbox" and payment["processor"]["reference"]
    page_url = payment["next_action"]["redirect_to_url"]["url"]
    assert page_url.startswith(merchant.base + "/sandbox/authenticate/" + payment["id"] + "?token=")
    assert payment["next_action"]["redirect_to_url"]["return_url"] == return_url

    page = requests.get(page_url, timeout=60)
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert re.search(r'value="succeed"', page.text) and payment["id"] in page.text
    # A wrong token opens nothing.
    assert requests.get(page_url[:-1] + "x", timeout=60).status_code == 404

    # The page reports to the processor-event route with a 10 s limit; under the local stack a
    # function's first start can wait for the watch to compile it (infra/e2e.sh), so the route is
    # started first, as any request would (an unsigned event: 400).
    warm = requests.post(merchant.base + "/processor_events/sandbox", json={}, timeout=300)
    assert warm.status_code == 400, warm.text
    answered = answer(page_url, outcome)
    return receiver, payment, answered


def answer(page_url, outcome):
    """The customer's click; a 503 (the report did not get through) is answered as the page says:
    the same answer again, which is the same report."""
    for _ in range(5):
        answered = requests.post(page_url, data={"outcome": outcome}, allow_redirects=False, timeout=60)
        if answered.status_code != 503:
            return answered
    return answered


def test_authenticating_settles_by_capture_method_with_events_and_webhooks(merchant, receivers):
    back = "http://127.0.0.1:9/back?order=1"
    receiver, payment, answered = authenticate(merchant, receivers, "automatic", "succeed", back)
    assert (answered.status_code, answered.headers.get("location")) == (303, back)
    after = merchant.get(f"/payments/{payment['id']}").json()
    assert (after["status"], after["amount_captured"], after["next_action"]) == ("succeeded", 2500, None)
    types = [e["type"] for e in merchant.get(f"/payments/{payment['id']}/events").json()["data"]]
    assert types == ["payment.requires_action", "payment.succeeded"]
    got = wait_for(lambda: (d := deliveries_of(receiver, payment["id"])) and len(d) >= 2 and d, "both webhooks")
    assert sorted(d["body"]["type"] for d in got) == ["payment.requires_action", "payment.succeeded"]

    receiver, manual, answered = authenticate(merchant, receivers, "manual", "succeed")
    assert answered.status_code == 200 and "authenticated" in answered.text
    after = merchant.get(f"/payments/{manual['id']}").json()
    assert (after["status"], after["amount_capturable"]) == ("requires_capture", 2500)
    assert after["capture_before"] is not None


def test_failing_the_page_fails_the_payment_once(merchant, receivers):
    receiver, payment, answered = authenticate(merchant, receivers, "automatic", "fail")
    assert answered.status_code == 200
    after = merchant.get(f"/payments/{payment['id']}").json()
    assert (after["status"], after["failure"]["code"]) == ("failed", "authentication_failed")
    page_url = payment["next_action"]["redirect_to_url"]["url"]
    # The other button afterwards is refused; the same one again changes nothing.
    assert answer(page_url, "succeed").status_code == 409
    assert answer(page_url, "fail").status_code == 200
    types = [e["type"] for e in merchant.get(f"/payments/{payment['id']}/events").json()["data"]]
    assert types == ["payment.requires_action", "payment.failed"]
    got = wait_for(lambda: (d := deliveries_of(receiver, payment["id"])) and len(d) >= 2 and d, "both webhooks")
    assert sorted(d["body"]["type"] for d in got) == ["payment.failed", "payment.requires_action"]


def test_an_unsigned_processor_event_is_refused(api):
    response = requests.post(api.base + "/processor_events/sandbox", json={"id": "sbxevt_x"}, timeout=60)
    assert (response.status_code, response.json()["code"]) == (400, "invalid_signature")
    response = requests.post(api.base + "/processor_events/stripe", json={}, timeout=60)
    assert response.status_code == 404


def test_an_approval_whose_answer_was_lost_is_settled_by_reconciliation_once(merchant, receivers):
    receiver = receivers()
    register(merchant, receiver)
    payment = merchant.create(payment_method="pm_card_processor_timeout")
    assert (payment["status"], payment["next_action"]) == ("processing", None)
    assert payment["processor"]["reference"], payment
    # (That capture, cancel and refund wait for the outcome is not asserted here: reconciliation
    # may settle it within 2 s, so what a request meets depends on the machine's speed. The
    # refusals are the domain's tests; the three-way race test drives a capture against it.)
    settled = wait_for(
        lambda: (p := merchant.get(f"/payments/{payment['id']}").json())["status"] != "processing" and p,
        "reconciliation (every 2 s, first after 2 s)",
    )
    assert (settled["status"], settled["amount_captured"]) == ("succeeded", 2500)
    types = [e["type"] for e in merchant.get(f"/payments/{payment['id']}/events").json()["data"]]
    assert types == ["payment.processing", "payment.succeeded"]
    got = wait_for(lambda: (d := deliveries_of(receiver, payment["id"])) and len(d) >= 2 and d, "both webhooks")
    assert sorted(d["body"]["type"] for d in got) == ["payment.processing", "payment.succeeded"]


def test_a_processing_payment_settles_by_the_processors_event(merchant, receivers):
    receiver = receivers()
    register(merchant, receiver)
    payment = merchant.create(payment_method="pm_card_processing", capture_method="manual")
    assert payment["status"] == "processing", payment
    # SANDBOX_SETTLE_SECONDS (5 s under make dev) + the sweep's second, generously.
    settled = wait_for(
        lambda: (p := merchant.get(f"/payments/{payment['id']}").json())["status"] != "processing" and p,
        "the sandbox's delayed event",
    )
    assert (settled["status"], settled["amount_capturable"]) == ("requires_capture", 2500)
    types = [e["type"] for e in merchant.get(f"/payments/{payment['id']}/events").json()["data"]]
    assert types == ["payment.processing", "payment.requires_capture"]
    got = wait_for(lambda: (d := deliveries_of(receiver, payment["id"])) and len(d) >= 2 and d, "both webhooks")
    assert sorted(d["body"]["type"] for d in got) == ["payment.processing", "payment.requires_capture"]


def test_an_action_not_completed_in_time_is_abandoned_by_the_sweeper(api):
    import os
    from datetime import datetime, timedelta

    validity = timedelta(seconds=int(os.environ["E2E_ACTION_VALIDITY_SECONDS"]))
    payment = api.create(payment_method="pm_card_authentication_required")
    created = datetime.fromisoformat(payment["created_at"].replace("Z", "+00:00"))
    # The sweeper runs every E2E_EXPIRY_SWEEP_INTERVAL_SECONDS after the deadline.
    left = (created + validity - datetime.now(created.tzinfo)).total_seconds()
    time.sleep(max(left, 0))
    abandoned = wait_for(
        lambda: (p := api.get(f"/payments/{payment['id']}").json())["status"] == "canceled" and p,
        "the expiry sweeper",
    )
    assert (abandoned["cancellation_reason"], abandoned["next_action"]) == ("abandoned", None)
    # The page still opens, but the customer's answer no longer moves the payment.
    page_url = payment["next_action"]["redirect_to_url"]["url"]
    requests.post(page_url, data={"outcome": "succeed"}, allow_redirects=False, timeout=60)
    assert api.get(f"/payments/{payment['id']}").json()["status"] == "canceled"
