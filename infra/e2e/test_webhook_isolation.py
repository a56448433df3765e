"""Isolation (../shared/API.md, "Webhooks", "Isolation"; README, "Isolation"): the noisy
neighbour of issue 22 on the local stack. Merchant A has 15 endpoints that hold every request 9 s
and one that answers 64 MiB, and makes 30 payments; merchant B, with one healthy endpoint, then
makes 5. Before the dispatcher, B's first attempts came after 16 s, two not within 60 s: the
relay waited for each stream batch's attempts, so every merchant's events waited behind A's
endpoints. Now B's arrive within the contract's 5 s while A's backlog is still being worked
through, every one of A's deliveries is still made, and the dispatcher's memory stays flat
while an endpoint streams 64 MiB at it (it reads 64 KiB of an answer, then hangs up)."""

import os
import time
from pathlib import Path

from conftest import new_merchant
from test_webhooks import deliveries_of, receivers, register, wait_for  # noqa: F401 (fixture)

HOLD = 9.0
BIG_ANSWER = 64 << 20
SLOW_ENDPOINTS = 15
NOISY_PAYMENTS = 30
QUIET_PAYMENTS = 5
# API.md: a first attempt within 5 s of the change, whatever other merchants' endpoints do.
FIRST_ATTEMPT_WITHIN = 5.0
RSS_LIMIT = 64 << 20


def dispatcher_peak_rss() -> list[int]:
    """VmHWM (bytes) of every running instance of the dispatcher's binary on this machine."""
    peaks = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            argv0 = (proc / "cmdline").read_bytes().split(b"\0")[0]
            if os.path.basename(argv0) != b"retry-webhook-deliveries":
                continue
            for line in (proc / "status").read_text().splitlines():
                if line.startswith("VmHWM:"):
                    peaks.append(int(line.split()[1]) * 1024)
        except OSError:
            continue  # ended meanwhile
    return peaks


def event_ids(merchant, payment):
    listed = merchant.get(f"/payments/{payment['id']}/events").json()
    return {event["id"] for event in listed["data"]}


def test_a_merchants_slow_and_hostile_endpoints_do_not_delay_another_merchants_webhooks(api, receivers):
    noisy = new_merchant(api)
    slow = [receivers(hold=HOLD) for _ in range(SLOW_ENDPOINTS)]
    big = receivers(answer_bytes=BIG_ANSWER, status=200)
    for receiver in [*slow, big]:
        register(noisy, receiver)
    noisy_payments = [noisy.create() for _ in range(NOISY_PAYMENTS)]
    # A's backlog is under way: its slow endpoints are holding attempts.
    wait_for(lambda: all(r.received() for r in slow), "A's endpoints to be attempted")

    quiet = new_merchant(api)
    healthy = receivers()
    register(quiet, healthy)
    made = []
    for _ in range(QUIET_PAYMENTS):
        payment = quiet.create()
        made.append((payment, time.monotonic()))
    latencies = []
    for payment, returned in made:
        [got] = wait_for(lambda: deliveries_of(healthy, payment["id"]), "B's first attempt")
        assert got["verified"], got
        latencies.append(got["at"] - returned)
    expected = set().union(*(event_ids(noisy, p) for p in noisy_payments))
    done = lambda r: expected <= {d["webhook_id"] for d in r.received()}  # noqa: E731
    still_waiting = sum(not done(r) for r in slow)
    print(f"B's first attempts after {', '.join(f'{s:.2f}' for s in latencies)} s "
          f"(max {max(latencies):.2f} s); A's slow endpoints still waiting: {still_waiting} of {len(slow)}")
    assert still_waiting > 0, "A's backlog was over before B's webhooks: the scenario did not load the stack"
    assert max(latencies) <= FIRST_ATTEMPT_WITHIN, latencies

    # Every one of A's deliveries is still made (its slow endpoints' a few at a time).
    started = time.monotonic()
    for receiver in [*slow, big]:
        wait_for(lambda: done(receiver), "every one of A's deliveries", timeout=240)
    print(f"A's {len(expected) * (len(slow) + 1)} deliveries all made "
          f"{time.monotonic() - started:.0f} s after B's arrived")

    # The 64 MiB answers were cut short, and the dispatcher's memory stayed flat.
    assert big.hung_up >= 1, "the dispatcher read an endless answer to its end"
    assert big.sent_bytes < len(expected) * BIG_ANSWER / 4, big.sent_bytes
    peaks = dispatcher_peak_rss()
    assert peaks, "no dispatcher process found"
    print(f"dispatcher peak RSS: {', '.join(f'{p / 2**20:.1f}' for p in peaks)} MiB")
    assert max(peaks) < RSS_LIMIT, peaks
