"""Shared steps of the integration tests: feed a scenario, wait for the exact expected state."""
from __future__ import annotations

import json

import topics
from devtools import kafka
from devtools.workers import metric_sum, scrape  # noqa: F401  (the tests read /metrics through here)
from app.partitioner import CachedPartitioner
from tests.support import scenario

PARTITIONS = range(4)  # PARTITIONS, as the test workers run
_partitioner = CachedPartitioner()


def card_partition(key: bytes) -> int:
    """The input partition Kafka's default partitioner gives `key` (a voucher id's: its card's)."""
    return _partitioner(key, PARTITIONS, PARTITIONS)


def customer_records(records) -> dict[str, dict]:
    return {r.key.decode(): json.loads(r.value) for r in kafka.latest_by_key(records).values()}


def feed(bootstrap: str, prefix: str, deliveries) -> None:
    kafka.produce(bootstrap, prefix + topics.WEBHOOKS.name, [(d.key, d.value, d.headers) for d in deliveries])


def wait_for_state(bootstrap: str, prefix: str, expected: dict[str, dict], timeout: float) -> dict[str, dict]:
    """Read customer-point-state until its compacted view equals `expected` (or the deadline); return the view."""

    def settled(rs):
        got = customer_records(rs)
        return len(got) == len(expected) and all(
            scenario.normalize_customer(got[c]) == expected[c] for c in expected)

    records = kafka.read_until(bootstrap, prefix + topics.CUSTOMER_POINT_STATE.name, settled, timeout=timeout)
    return customer_records(records)


def views_mismatches(worker, expected: dict[str, dict]) -> list[str]:
    """Customers whose view differs from the expectation (empty when all match)."""
    bad = []
    for customer, want in expected.items():
        status, body = worker.get(f"/customers/{customer}")
        if status != 200 or scenario.normalize_customer(body) != want:
            bad.append(f"{customer}: {status} {str(body)[:200]}")
    return bad


def voucher_mismatches(worker, sc) -> list[str]:
    """Cards whose view differs from the truth (entry statuses and points)."""
    cards: dict[str, dict[str, tuple[str, int]]] = {}
    for e in sc.entries:
        cards.setdefault(e.voucher_id, {})[e.id] = (e.status, e.points)
    bad = []
    for voucher, want in cards.items():
        status, body = worker.get(f"/vouchers/{voucher}")
        got = {x["id"]: (x["status"], x["points"]) for x in body["entries"]} if status == 200 else None
        if got != want:
            bad.append(f"{voucher}: {status}")
    return bad


def wait_views(worker, expected: dict[str, dict], timeout: float) -> float:
    """Poll until every customer's view on `worker` is exact; return the seconds it took (raises on deadline)."""
    import time

    start = time.monotonic()
    pending = dict(expected)
    last = None
    while pending:
        for customer in list(pending):
            try:
                status, body = last = worker.get(f"/customers/{customer}")
            except OSError as exc:
                last = exc
                break
            if status == 200 and scenario.normalize_customer(body) == pending[customer]:
                del pending[customer]
            else:
                break
        if pending:
            if time.monotonic() - start > timeout:
                raise AssertionError(
                    f"{len(pending)} customers still wrong after {timeout}s; last answer {str(last)[:300]}")
            time.sleep(0.1)
    return time.monotonic() - start


def wait_until(probe, *, timeout: float, what: str, interval: float = 0.2):
    """Call `probe()` until it returns something truthy (returned) or the deadline passes (AssertionError)."""
    import time

    deadline = time.monotonic() + timeout
    while True:
        got = probe()
        if got:
            return got
        assert time.monotonic() < deadline, f"not within {timeout}s: {what}"
        time.sleep(interval)
