"""Webhook endpoints over HTTP (../shared/API.md, "Webhooks"): registration rules, the secret
shown only on create and rotation, tenancy, the 16-endpoint limit. Every test works on a merchant
of its own (the limit is per merchant)."""


def hook(url="https://example.com/hooks", events=("payment.succeeded",)):
    return {"url": url, "enabled_events": list(events)}


def test_register_read_update_rotate_and_delete(merchant):
    created = merchant.post("/webhook_endpoints", hook())
    assert created.status_code == 201, created.text
    endpoint = created.json()
    assert endpoint["secret"].startswith("whsec_")
    assert (endpoint["object"], endpoint["status"]) == ("webhook_endpoint", "enabled")
    path = f"/webhook_endpoints/{endpoint['id']}"

    shown = merchant.get(path).json()
    assert "secret" not in shown
    assert shown == {k: v for k, v in endpoint.items() if k != "secret"}
    listed = merchant.get("/webhook_endpoints").json()["data"]
    assert [e["id"] for e in listed] == [endpoint["id"]]
    assert all("secret" not in e for e in listed)

    updated = merchant.post(path, {"status": "disabled", "enabled_events": ["*"]}).json()
    assert (updated["status"], updated["enabled_events"]) == ("disabled", ["*"])

    rotated = merchant.post(f"{path}/rotate_secret")
    assert rotated.status_code == 200, rotated.text
    assert rotated.json()["secret"] not in (None, endpoint["secret"])

    deleted = merchant.call("DELETE", path)
    assert deleted.json() == {"id": endpoint["id"], "object": "webhook_endpoint", "deleted": True}
    assert merchant.get(path).status_code == 404
    assert merchant.call("DELETE", path).status_code == 404


def test_bad_urls_and_another_merchants_endpoint(merchant, api):
    for url in ("http://example.com/x", "https://10.0.0.1/x", "https://169.254.169.254/x", "https://[::1]/x"):
        refused = merchant.post("/webhook_endpoints", hook(url))
        assert refused.status_code == 400, url
        assert (refused.json()["code"], refused.json()["param"]) == ("validation_error", "url")
    refused = merchant.post("/webhook_endpoints", hook(events=["payment.exploded"]))
    assert refused.json()["param"] == "enabled_events"
    # The local stack alone accepts a receiver on this machine.
    local = merchant.post("/webhook_endpoints", hook("http://127.0.0.1:8123/hooks"))
    assert local.status_code == 201, local.text

    theirs = f"/webhook_endpoints/{local.json()['id']}"
    assert api.get(theirs).status_code == 404
    assert api.post(theirs, {"status": "disabled"}).status_code == 404
    assert api.call("DELETE", theirs).status_code == 404
    assert merchant.get(theirs).json()["status"] == "enabled"


def test_the_seventeenth_endpoint_is_refused(merchant):
    for n in range(16):
        assert merchant.post("/webhook_endpoints", hook()).status_code == 201, n
    refused = merchant.post("/webhook_endpoints", hook())
    assert refused.status_code == 400
    assert (refused.json()["code"], refused.json()["param"]) == ("validation_error", "url")
    first = merchant.get("/webhook_endpoints?limit=100").json()["data"][-1]
    merchant.call("DELETE", f"/webhook_endpoints/{first['id']}")
    assert merchant.post("/webhook_endpoints", hook()).status_code == 201
