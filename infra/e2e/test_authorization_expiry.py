"""Authorization expiry over HTTP (../shared/API.md, "Authorization expiry"), against the stack
infra/e2e.sh starts with AUTHORIZATION_VALIDITY_SECONDS and EXPIRY_SWEEP_INTERVAL_SECONDS short
(20 s and 5 s), so that a lapse and the sweep that follows are seen within a test."""

import os
import time
from datetime import datetime, timedelta

VALIDITY = timedelta(seconds=int(os.environ["E2E_AUTHORIZATION_VALIDITY_SECONDS"]))
SWEEP_INTERVAL = timedelta(seconds=int(os.environ["E2E_EXPIRY_SWEEP_INTERVAL_SECONDS"]))
# Room for one sweep run on a busy machine, beyond the interval the contract promises.
SLACK = timedelta(seconds=10)


def instant(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def wait_until(moment: datetime):
    left = (moment - datetime.now(moment.tzinfo)).total_seconds()
    if left > 0:
        time.sleep(left)


def test_only_a_waiting_authorization_shows_capture_before(api):
    manual = api.create(capture_method="manual")
    assert instant(manual["capture_before"]) == instant(manual["created_at"]) + VALIDITY
    automatic = api.create()
    failed = api.create(payment_method="pm_card_declined", capture_method="manual")
    captured = api.post(f"/payments/{api.create(capture_method='manual')['id']}/capture").json()
    canceled = api.post(f"/payments/{api.create(capture_method='manual')['id']}/cancel").json()
    for payment in (automatic, failed, captured, canceled):
        assert payment["capture_before"] is None, payment
    assert (captured["status"], canceled["status"]) == ("succeeded", "canceled")


def test_a_client_cannot_give_the_expired_reason(api):
    payment = api.create(capture_method="manual")
    refused = api.post(f"/payments/{payment['id']}/cancel", {"cancellation_reason": "expired"})
    assert refused.status_code == 400, refused.text
    problem = refused.json()
    assert (problem["code"], problem["param"]) == ("validation_error", "cancellation_reason")
    assert api.get(f"/payments/{payment['id']}").json()["status"] == "requires_capture"


def test_a_lapsed_authorization_is_refused_then_expired_by_the_sweep(api):
    lapsing = api.create(capture_method="manual")
    other = api.create(capture_method="manual")
    deadline = instant(lapsing["capture_before"])
    wait_until(deadline)

    for payment in (lapsing, other):
        for action in ("capture", "cancel"):
            refused = api.post(f"/payments/{payment['id']}/{action}")
            # Refused from capture_before on, whether or not the sweep has run yet.
            assert refused.status_code == 409, refused.text
            assert refused.json()["code"] == "invalid_state"

    expired_by = deadline + SWEEP_INTERVAL + SLACK
    while True:
        shown = api.get(f"/payments/{lapsing['id']}").json()
        if shown["status"] != "requires_capture":
            break
        assert shown["capture_before"] == lapsing["capture_before"]
        assert datetime.now(deadline.tzinfo) < expired_by, "not expired within the sweep interval"
        time.sleep(0.5)
    assert shown["status"] == "canceled"
    assert shown["cancellation_reason"] == "expired"
    assert (shown["amount_capturable"], shown["capture_before"]) == (0, None)
    assert deadline <= instant(shown["updated_at"]) <= expired_by

    trail = api.get(f"/payments/{lapsing['id']}/events").json()["data"]
    assert [e["type"] for e in trail] == ["payment.requires_capture", "payment.canceled"]
    assert trail[-1]["data"] == shown
    # Still refused once expired, and never expired twice.
    assert api.post(f"/payments/{lapsing['id']}/capture").status_code == 409
    time.sleep(SWEEP_INTERVAL.total_seconds() + 1)
    assert len(api.get(f"/payments/{lapsing['id']}/events").json()["data"]) == 2
    assert api.get(f"/payments/{other['id']}").json()["cancellation_reason"] == "expired"
