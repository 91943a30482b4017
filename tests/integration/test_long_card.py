"""A card with thousands of entries through the documented contract: exact totals, paged entries, and no record
on any topic that grows with the card's history (Apache Kafka refuses records over 1 MiB by default)."""
from __future__ import annotations

import time

import pytest

import topics
from devtools import simulate
from tests.support import helpers
from devtools import kafka

pytestmark = [pytest.mark.integration, pytest.mark.slow]

N, CHUNK = 3000, 1000  # entries on the card; deliveries fed at a time
VOUCHER, CUSTOMER = "v_long_card", "cust_long_card"


def _delivery(e, ev) -> tuple[bytes, bytes, list]:
    d = simulate.envelope(e, ev)
    return d.key, d.value, d.headers


def test_long_card__thousands_of_entries_fed_in_chunks_stay_exact_paged_and_small(
    broker, worker_factory, topic_prefix
):
    entries = simulate.long_card(N)  # an order an hour on one card; every fifth canceled, the others activated
    timeline = simulate.timeline(entries)  # sent as they happen: about 170 entries pending or recent at a time
    w = worker_factory().wait_ready()
    state_topic = topic_prefix + topics.CUSTOMER_POINT_STATE.name
    per_delivery_ms = []
    for start in range(0, len(timeline), CHUNK):
        chunk = timeline[start:start + CHUNK]
        want = simulate.totals(timeline[:start + CHUNK])
        started = time.monotonic()
        kafka.produce(broker.bootstrap, topic_prefix + topics.WEBHOOKS.name, [_delivery(e, ev) for e, ev in chunk])

        def reached(rs):
            rec = helpers.customer_records(rs).get(CUSTOMER)
            return rec is not None and (rec["pending_points"], rec["activated_points"],
                                        rec["canceled_points"]) == want

        records = kafka.read_until(broker.bootstrap, state_topic, reached, timeout=120)
        assert reached(records), (start, want, helpers.customer_records(records).get(CUSTOMER), w.log_tail())
        per_delivery_ms.append((time.monotonic() - started) * 1000 / len(chunk))
    print("ms per delivery by chunk (reading the state topic included):", [round(x, 2) for x in per_delivery_ms])

    # The card's view: totals, and every entry once, newest first, in pages
    status, first = w.get(f"/vouchers/{VOUCHER}?limit=1000")
    assert status == 200 and first["entries_count"] == N
    seen, page = [], first
    while True:
        seen += [x["id"] for x in page["entries"]]
        if page["next_after"] is None:
            break
        status, page = w.get(f"/vouchers/{VOUCHER}?limit=1000&after={page['next_after']}")
        assert status == 200
    assert seen == [e.id for e in reversed(entries)]
    assert w.get(f"/vouchers/{VOUCHER}?limit=0")[0] == 400
    assert w.get(f"/vouchers/{VOUCHER}?after=lopp_nope")[0] == 400

    # No record the service wrote, on any topic, comes near Kafka's 1 MiB: the largest stays under 64 KiB
    app_id = f"pp-{topic_prefix.rstrip('-')}"
    written = [topic_prefix + s.name for s in topics.ALL if s is not topics.WEBHOOKS]
    written += [f"{app_id}-{t}-changelog" for t in ("cards", "entries", "customers")]
    largest = {}
    for name in written:
        rs = kafka.read_until(broker.bootstrap, name, lambda rs: False, timeout=2)
        largest[name] = max((len(r.value or b"") + len(r.key or b"") for r in rs), default=0)
    assert max(largest.values()) < 64 * 1024, largest
    assert largest[f"{app_id}-entries-changelog"] > 0 and largest[topic_prefix + topics.ENTRIES.name] > 0
