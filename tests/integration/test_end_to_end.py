"""End to end on a real broker: deliveries in, customer-point-state / activations / DLQ / views out."""
from __future__ import annotations

import json

import pytest

import topics
from app.logic import routing
from app.logic.decode import Accepted, decode
from app.models import codec
from tests.support import helpers
from devtools import kafka
from tests.support import scenario

pytestmark = pytest.mark.integration

CUSTOMER = "cust_IdgAFZxYwwHctOk9pPuMu308"


def _customer_records(records):
    return {r.key.decode(): json.loads(r.value) for r in kafka.latest_by_key(records).values()}


def _totals(record: dict) -> tuple:
    # The two examples land on different partitions: an intermediate record may hold only one of them.
    return record.get("pending_points"), record.get("activated_points"), record.get("canceled_points")


def test_documented_examples__answer_over_http_and_on_the_state_topic(broker, worker_factory, topic_prefix):
    from app.cli.feed import sample_deliveries

    w = worker_factory().wait_ready()
    # (started with the garbage collector tuned for its batches: GC_GEN0_THRESHOLD, app/startup/worker.py)
    assert "start-up objects frozen, young collections every 50000 allocations" in w.log_tail(1_000_000)
    # Given the two documented example payloads, as raw payloads with their type in the header
    kafka.produce(broker.bootstrap, topic_prefix + topics.WEBHOOKS.name,
                  [(None, body, [("event-type", etype.encode())]) for body, etype in sample_deliveries()])
    # When the worker has published the customer's state
    records = kafka.read_until(
        broker.bootstrap, topic_prefix + topics.CUSTOMER_POINT_STATE.name,
        lambda rs: _totals(_customer_records(rs).get(CUSTOMER, {})) == (1, 5, 0), timeout=60,
    )
    # Then the record and the view agree: 1 point pending (added example), 5 activated (activated example)
    record = _customer_records(records)[CUSTOMER]
    assert _totals(record) == (1, 5, 0)
    assert record["next_activation"] == {"date": "2025-01-28", "points": 1}
    status, body = w.get(f"/customers/{CUSTOMER}")
    assert status == 200 and body == record
    status, card = w.get("/vouchers/v_hjQhSsitD6lAATASbRV1Ef7dUCjpy0iw")
    assert status == 200
    assert {e["id"]: e["status"] for e in card["entries"]} == {
        "lopp_100cc4fac41469454d": "PENDING", "lopp_100e0e48afc99da421": "ACTIVATED"}
    status, body = w.get("/customers/cust_nobody")
    assert status == 404 and body["error"] == "not_found"
    assert w.get("/vouchers/v_nothing")[0] == 404


# STREAM_FEED=faust: the stages' records through Faust's own streams, kept to measure what the direct feed saves
@pytest.mark.parametrize("stream_feed", ["direct", "faust"])
def test_scenario__final_state_views_activations_and_dead_letters_are_exact(broker, worker_factory, topic_prefix,
                                                                            stream_feed):
    sc = scenario.build(seed=11)
    expected = scenario.expected_customers(sc)
    w = worker_factory(MAX_DELIVERY_BYTES="65536", STREAM_FEED=stream_feed).wait_ready()
    # Given hundreds of entries' deliveries: duplicated, shuffled, mixed forms, malformed and foreign ones
    kafka.produce(broker.bootstrap, topic_prefix + topics.WEBHOOKS.name,
                  [(d.key, d.value, d.headers) for d in sc.deliveries])

    # Then the compacted view of customer-point-state equals the reference model
    def settled(rs):
        got = _customer_records(rs)
        return len(got) == len(expected) and all(
            scenario.normalize_customer(got[c]) == expected[c] for c in expected)

    records = kafka.read_until(broker.bootstrap, topic_prefix + topics.CUSTOMER_POINT_STATE.name, settled,
                               timeout=180)
    got = {c: scenario.normalize_customer(r) for c, r in _customer_records(records).items()}
    assert got == expected, w.log_tail()

    # And every customer's view answers the same record
    for customer, record in _customer_records(records).items():
        assert w.get(f"/customers/{customer}") == (200, record)
    # And a card's view lists its entries with their final status and points
    entry = sc.entries[1]
    status, card = w.get(f"/vouchers/{entry.voucher_id}")
    assert status == 200
    listed = {e["id"]: (e["status"], e["points"]) for e in card["entries"]}
    assert listed == {e.id: (e.status, e.points) for e in sc.entries if e.voucher_id == entry.voucher_id}

    # And the added/activated join holds one record per activated entry
    want = scenario.expected_activations(sc)
    acts = kafka.read_until(broker.bootstrap, topic_prefix + topics.ACTIVATIONS.name,
                            lambda rs: len(kafka.latest_by_key(rs)) >= len(want), timeout=60)
    joined = {k.decode(): json.loads(r.value) for k, r in kafka.latest_by_key(acts).items()}
    assert {k: {f: v[f] for f in next(iter(want.values()))} for k, v in joined.items()} == want

    # And exactly the malformed deliveries were dead-lettered, bytes untouched, with reason and coordinates
    dlq = kafka.read_until(broker.bootstrap, topic_prefix + topics.DEAD_LETTERS.name,
                           lambda rs: len(rs) >= sc.malformed_count, timeout=60, settle=2)
    assert len(dlq) == sc.malformed_count
    sent = sorted((d.value or b"") for d in sc.deliveries if d.kind == "malformed")
    assert sorted((r.value or b"") for r in dlq) == sent
    for r in dlq:
        assert r.headers[topics.DLQ_REASON] and r.headers[topics.DLQ_SOURCE_TOPIC].decode().endswith(
            topics.WEBHOOKS.name)
        int(r.headers[topics.DLQ_SOURCE_PARTITION]), int(r.headers[topics.DLQ_SOURCE_OFFSET])

    # And the worker counted the skipped foreign event types
    status, stats = w.get("/stats")
    assert sum(stats.get("skipped", {}).values()) == sum(d.kind == "skipped" for d in sc.deliveries)

    # And /metrics accounts for every delivery: processed, skipped or dead-lettered, none twice
    def lag_zero():
        m = helpers.scrape(w)
        lags = [v for (n, _), v in m.items() if n == "pending_points_consumer_lag"]
        return m if lags and not any(lags) else None

    m = helpers.wait_until(lag_zero, timeout=30, what="consumer lag 0 on every input partition")
    deliveries = "pending_points_deliveries_total"
    assert helpers.metric_sum(m, deliveries, outcome="processed") == sum(
        d.kind in ("valid", "duplicate") for d in sc.deliveries)
    assert helpers.metric_sum(m, deliveries, outcome="skipped") == sum(d.kind == "skipped" for d in sc.deliveries)
    assert helpers.metric_sum(m, deliveries, outcome="dead_lettered") == sc.malformed_count
    assert helpers.metric_sum(m, "pending_points_dead_letters_total") == sc.malformed_count
    assert helpers.metric_sum(m, deliveries) == len(sc.deliveries)
    for step in ("added", "activated", "canceled"):
        assert helpers.metric_sum(m, deliveries, event_type=step, outcome="processed") > 0, step
    # valid deliveries not on their card's partition (the one their voucher id is keyed to) are written again
    # keyed by it, and folded from that copy; the others are folded where they sit, whatever their key
    forwarded = helpers.metric_sum(m, "pending_points_forwarded_total")
    records = kafka.read_until(broker.bootstrap, topic_prefix + topics.WEBHOOKS.name,
                               lambda rs: len(rs) >= len(sc.deliveries) + forwarded, timeout=30)
    placed = [(r, out.event.voucher_id.encode()) for r in records if topics.FORWARDED_FROM not in r.headers
              and isinstance(out := decode(r.value, r.headers, max_bytes=1 << 20), Accepted)]
    assert forwarded == sum(r.partition != helpers.card_partition(v) for r, v in placed) > 0
    assert any(r.partition == helpers.card_partition(v) and r.key != v for r, v in placed)  # not forwarded
    # each copy carries the event its value decodes to (to the byte), and the stage folded every copy from it
    copies = [(r.value, r.headers) for r in records if topics.FORWARDED_FROM in r.headers]
    assert len(copies) == forwarded
    assert all(codec.dump(routing.carried(h)) == codec.dump(decode(value, h, max_bytes=1 << 20).event)
               for value, h in copies)
    assert helpers.metric_sum(m, "pending_points_forwarded_copies_decoded_total") == 0
    # a latency observation per stage and record: end to end (stage=customers) for each delivery folded into a
    # card whose summary its customer took
    assert helpers.metric_sum(m, "pending_points_processing_latency_seconds_count", stage="cards") == len(
        sc.deliveries) + forwarded
    assert 0 < helpers.metric_sum(m, "pending_points_processing_latency_seconds_count", stage="customers") <= sum(
        d.kind in ("valid", "duplicate") for d in sc.deliveries)
    # one worker holds every customer's partition: each summary was folded in place, none crossed Kafka
    assert kafka.read_until(broker.bootstrap, topic_prefix + topics.CARD_UPDATES.name, lambda rs: False,
                            timeout=2) == []
    vouchers = {e.voucher_id for e in sc.entries}
    assert helpers.metric_sum(m, "pending_points_table_keys", table="cards", role="active") >= len(vouchers)
    assert helpers.metric_sum(m, "pending_points_table_keys", table="customers", role="active") >= len(expected)
    assert helpers.metric_sum(m, "pending_points_recovery_remaining_records", role="active") == 0
    assert helpers.metric_sum(m, "pending_points_ready") == 1
