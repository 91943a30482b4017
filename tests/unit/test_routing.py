"""The cards stage's decision for each delivery: fold it on its card's partition, or forward it there once."""
from __future__ import annotations

import datetime as dt

import topics
from app.logic import routing
from app.logic.decode import Accepted, Rejected, Skipped
from app.models import codec
from app.models.records import DeadLetterReason, NormalizedEvent, Observation, Step

EVENT = NormalizedEvent(step=Step.ADDED, entry_id="lopp_1", voucher_id="v_1", customer_id="c1",
                        observation=Observation(points=5, activates_at=dt.date(2025, 3, 5), customer_id="c1"))
HOME = {b"v_1": 2}
CARRIED = routing.DECODE_VERSION + b":" + codec.dump(EVENT)  # the forwarded-event header of EVENT's copy


def route(key, partition, headers=(), *, size=100, outcome=Accepted(EVENT)):
    return routing.route(outcome, key, b"", list(headers), ("in", partition, 42), home=HOME.__getitem__,
                         size=lambda key, value, headers: size + len(key) + sum(len(k) + len(v) for k, v in headers),
                         max_record=1000)


def test_a_delivery_on_its_cards_partition_is_folded_where_it_sits_whatever_its_key():
    for key in (b"v_1", None, b"c1"):  # keyed by its voucher; no key or another key that landed there
        assert route(key, 2) == routing.Fold(EVENT), key


def test_any_other_valid_delivery_is_forwarded_keyed_by_its_voucher_with_its_headers_and_where_it_came_from():
    headers = [("event-type", b"voucher.loyalty_card.pending_points.added"), ("source", b"backfill")]
    for key, partition in ((None, 0), (b"c1", 1), (b"v_1", 0)):  # no key, another key, its key elsewhere
        assert route(key, partition, headers) == routing.Forward(
            EVENT, b"v_1", [*headers, (topics.FORWARDED_FROM, f"in/{partition}/42".encode()),
                            (topics.FORWARDED_EVENT, CARRIED)]), (key, partition)


def test_a_forwarded_copy_carries_its_event_so_it_is_not_decoded_again():
    step = route(None, 0)
    assert routing.carried(dict(step.headers)) == EVENT


def test_a_copy_too_large_with_its_event_is_forwarded_without_it_and_decoded_from_its_value():
    step = route(None, 0, size=976)  # 976 + key (3) + forwarded-from (21): exactly 1000, the event header is over
    assert step == routing.Forward(EVENT, b"v_1", [(topics.FORWARDED_FROM, b"in/0/42")])
    assert routing.carried(dict(step.headers)) is None


def test_a_delivery_that_already_carries_an_event_header_is_forwarded_with_ours_only():
    forged = (topics.FORWARDED_EVENT, routing.DECODE_VERSION + b":" + codec.dump(EVENT.model_copy(update={
        "observation": EVENT.observation.model_copy(update={"points": 10**6})})))
    step = route(None, 0, [forged])
    assert [h for h in step.headers if h[0] == topics.FORWARDED_EVENT] == [(topics.FORWARDED_EVENT, CARRIED)]
    too_big = route(None, 0, [forged], size=900)  # ours does not fit: the copy carries none
    assert isinstance(too_big, routing.Forward) and topics.FORWARDED_EVENT not in dict(too_big.headers)


def _carried(event: bytes, version: bytes = routing.DECODE_VERSION):
    return routing.carried({topics.FORWARDED_FROM: b"in/0/7", topics.FORWARDED_EVENT: version + b":" + event})


def test_only_an_event_as_decoding_gives_it_is_taken_from_a_copy_else_its_value_is_decoded():
    event = codec.dump(EVENT)
    assert _carried(event) == EVENT
    assert routing.carried({topics.FORWARDED_EVENT: CARRIED}) is None  # not a copy we wrote
    assert _carried(event, version=b"0") is None  # another decoder's output: decoded again by this one
    assert routing.carried({topics.FORWARDED_FROM: b"in/0/7", topics.FORWARDED_EVENT: codec.dump(EVENT)}) is None
    assert _carried(b"{") is None
    assert _carried(event[:-1] + b',"x":1}') is None
    obs = EVENT.observation
    for bad in (EVENT.model_copy(update={"observation": obs.model_copy(update={"points": -1})}),
                EVENT.model_copy(update={"voucher_id": ""}),
                EVENT.model_copy(update={"entry_id": "x" * 257}),
                EVENT.model_copy(update={"observation": obs.model_copy(update={  # naive: not comparable with UTC
                    "created_at": dt.datetime(2025, 3, 1, 12)})}),
                EVENT.model_copy(update={"observation": obs.model_copy(update={
                    "created_at": dt.datetime(2025, 3, 1, 12, tzinfo=dt.timezone(dt.timedelta(hours=2)))})})):
        assert _carried(codec.dump(bad)) is None, bad


def test_a_forwarded_copy_is_folded_on_its_cards_partition_and_never_forwarded_again():
    copy = [("event-type", b"x"), (topics.FORWARDED_FROM, b"in/0/7")]
    assert route(b"v_1", 2, copy) == routing.Fold(EVENT)
    misplaced = route(b"v_1", 1, copy)  # the topic's partition count is not PARTITIONS
    assert isinstance(misplaced, Rejected) and misplaced.reason.code == "misplaced" and misplaced.event_type == "added"


def test_a_delivery_whose_copy_would_be_over_the_record_limit_is_dead_lettered_not_forwarded():
    assert isinstance(route(None, 0, size=976), routing.Forward)  # 976 + key (3) + forwarded-from (21): 1000
    too_big = route(None, 0, size=980)  # 980 + 3 + 21: over
    assert isinstance(too_big, Rejected) and too_big.reason.code == "copy_too_large"
    assert "KAFKA_MAX_RECORD_BYTES" in too_big.reason.detail


def test_skipped_and_rejected_deliveries_pass_through():
    skipped, rejected = Skipped("customer.order.paid"), Rejected(DeadLetterReason(code="empty", detail="x"))
    assert route(None, 0, outcome=skipped) is skipped and route(b"v_1", 2, outcome=rejected) is rejected
