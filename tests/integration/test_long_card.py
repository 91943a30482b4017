"""A card with thousands of entries through the documented contract: exact totals, paged entries, and no record
on any topic that grows with the card's history (Apache Kafka refuses records over 1 MiB by default)."""
from __future__ import annotations

import datetime as dt
import json
import time

import pytest

import topics
from app.simulate import Entry, Event, event_data, iso
from tests.integration import helpers
from tests.support import kafka

pytestmark = pytest.mark.integration

N, CHUNK = 3000, 500
T0 = dt.datetime(2021, 1, 1, tzinfo=dt.timezone.utc)
VOUCHER, CUSTOMER = "v_long_card", "cust_long_card"


def _entries() -> list[Entry]:
    """One order an hour on one card; every fifth canceled a day later, the others activated after 7 days."""
    out = []
    for i in range(N):
        created = T0 + dt.timedelta(hours=i)
        e = Entry(id=f"lopp_long_{i:06d}", voucher_id=VOUCHER, customer_id=CUSTOMER, campaign_id="camp_long",
                  order_id=f"ord_long_{i:06d}", created_at=created, activates_at=(created + dt.timedelta(days=7)).date())
        pts = 10 + i % 90
        e.events.append(Event("added", created, pts, {"points": i, "balance": i, "pending_points": pts}))
        final = ("canceled", created + dt.timedelta(days=1)) if i % 5 == 4 else ("activated",
                                                                                  created + dt.timedelta(days=7))
        e.events.append(Event(final[0], final[1], pts, {"points": i, "balance": i, "pending_points": 0}))
        out.append(e)
    return out


def _delivery(e: Entry, ev: Event) -> tuple[bytes, bytes, list]:
    etype = f"voucher.loyalty_card.pending_points.{ev.step}"
    envelope = {"id": f"whs_{e.id}_{ev.step}", "created_at": iso(ev.at), "type": etype,
                "data": event_data(e, ev, "example"),
                "event": {"id": f"evcus_{e.id}_{ev.step}", "type": etype, "created_at": iso(ev.at)}}
    return VOUCHER.encode(), json.dumps(envelope).encode(), []


def test_long_card__thousands_of_entries_fed_in_chunks_stay_exact_paged_and_small(
    broker, worker_factory, topic_prefix
):
    entries = _entries()
    w = worker_factory().wait_ready()
    state_topic = topic_prefix + topics.CUSTOMER_POINT_STATE.name
    per_delivery_ms = []
    for k in range(N // CHUNK + 1):
        # chunk k: the added events of entries [k*CHUNK, (k+1)*CHUNK), the final events of the chunk before
        added = entries[k * CHUNK:(k + 1) * CHUNK]
        finals = entries[(k - 1) * CHUNK:k * CHUNK] if k else []
        batch = [_delivery(e, e.events[0]) for e in added] + [_delivery(e, e.events[1]) for e in finals]
        fed = entries[:(k + 1) * CHUNK]
        done = entries[:k * CHUNK]
        want = (sum(e.events[0].points for e in fed[len(done):]),
                sum(e.points for e in done if e.status == "ACTIVATED"),
                sum(e.points for e in done if e.status == "CANCELED"))
        started = time.monotonic()
        kafka.produce(broker.bootstrap, topic_prefix + topics.WEBHOOKS.name, batch)

        def reached(rs):
            rec = helpers.customer_records(rs).get(CUSTOMER)
            return rec is not None and (rec["pending_points"], rec["activated_points"],
                                        rec["canceled_points"]) == want

        records = kafka.read_until(broker.bootstrap, state_topic, reached, timeout=120)
        assert reached(records), (k, want, helpers.customer_records(records).get(CUSTOMER), w.log_tail())
        per_delivery_ms.append((time.monotonic() - started) * 1000 / len(batch))
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
