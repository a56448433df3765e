"""Fixtures of the end-to-end layer: the running local stack (infra/e2e.sh starts it and sets
E2E_BASE_URL and E2E_API_KEY, the dev merchant's key) and an HTTP client for it."""

import json
import os
import subprocess
import uuid

import pytest
import requests


class Api:
    """The local API over HTTP, as a client would call it (curl in the README)."""

    def __init__(self, base: str, key: str):
        self.base = base
        self.key = key
        self.http = requests.Session()

    def call(self, method: str, path: str, *, body=None, key=None, headers=None, raw=None):
        sent = {"Authorization": f"Bearer {key or self.key}"}
        if body is not None or raw is not None:
            sent["Content-Type"] = "application/json"
        sent.update(headers or {})
        response = self.http.request(
            method,
            self.base + path,
            json=body if raw is None else None,
            data=raw,
            headers=sent,
            timeout=60,
        )
        assert response.headers.get("x-request-id"), f"{method} {path}: no x-request-id"
        return response

    def get(self, path: str, **kw):
        return self.call("GET", path, **kw)

    def post(self, path: str, body=None, **kw):
        return self.call("POST", path, body=body, **kw)

    def create(self, **fields):
        body = {"amount": 2500, "currency": "usd", "payment_method": "pm_card_visa", **fields}
        response = self.post("/payments", body)
        assert response.status_code == 201, response.text
        return response.json()


@pytest.fixture(scope="session")
def api() -> Api:
    return Api(os.environ["E2E_BASE_URL"], os.environ["E2E_API_KEY"])


@pytest.fixture
def key() -> str:
    """A fresh Idempotency-Key."""
    return f"e2e-{uuid.uuid4()}"


@pytest.fixture
def merchant(api) -> Api:
    """A fresh merchant, made with the admin CLI as the README says."""
    return new_merchant(api)


def new_merchant(api) -> Api:
    out = subprocess.run(
        ["bash", "infra/admin.sh", "merchants", "create", "--name", "e2e-hooks"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    return Api(api.base, json.loads(out)["api_key"])
