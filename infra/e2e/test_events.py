"""The merchant-wide event list and single events over HTTP (../shared/API.md, "Events")."""


def test_events_of_every_payment_newest_first_with_a_type_filter(api):
    automatic = api.create()
    manual = api.create(capture_method="manual")
    api.post(f"/payments/{manual['id']}/cancel")
    mine = {automatic["id"], manual["id"]}

    page = api.get("/events?limit=100").json()
    ours = [e for e in page["data"] if e["payment_id"] in mine]
    assert [e["type"] for e in ours] == [
        "payment.canceled",
        "payment.requires_capture",
        "payment.succeeded",
    ]
    ids = [e["id"] for e in page["data"]]
    assert ids == sorted(ids, reverse=True), "newest first"

    canceled = api.get("/events?type=payment.canceled&limit=100").json()["data"]
    assert canceled and all(e["type"] == "payment.canceled" for e in canceled)
    assert any(e["payment_id"] == manual["id"] for e in canceled)

    trail = api.get(f"/payments/{manual['id']}/events").json()["data"]
    for event in trail:
        one = api.get(f"/events/{event['id']}")
        assert one.status_code == 200, one.text
        assert one.json() == event


def test_bad_event_filters_and_ids(api):
    refused = api.get("/events?type=payment.exploded")
    assert refused.status_code == 400
    assert (refused.json()["code"], refused.json()["param"]) == ("validation_error", "type")
    for missing in ("evt_00000000000000000000000000000000", "evt_nope", "pay_00000000000000000000000000000000"):
        response = api.get(f"/events/{missing}")
        assert response.status_code == 404, missing
        assert response.json()["code"] == "not_found"
