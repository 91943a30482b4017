"""Inbound models and decode: the documented payloads and envelopes are accepted, each bad-input class rejected."""
from __future__ import annotations

import json

import pytest

from app.logic.decode import Accepted, Rejected, Skipped, decode, step_of
from app.models.records import Step

from app.cli.feed import SAMPLES  # noqa: E402  (the bundled samples: one copy, app/samples)
ADDED = "voucher.loyalty_card.pending_points.added"
ACTIVATED = "voucher.loyalty_card.pending_points.activated"


def _sample(name: str) -> dict:
    return json.loads((SAMPLES / name).read_text())


def _decode(body, headers=None, max_bytes=1 << 20):
    value = body if isinstance(body, bytes) or body is None else json.dumps(body).encode()
    return decode(value, headers or {}, max_bytes=max_bytes)


def _accepted(result) -> Accepted:
    assert isinstance(result, Accepted), result
    return result


@pytest.mark.parametrize(
    "name",
    [
        "voucher.loyalty_card.pending_points.added",
        "customer.voucher.loyalty_card.pending_points.added",
        "EVENTS.VOUCHER.LOYALTY_CARD.PENDING_POINTS.ADDED",
        "events.customer.voucher.loyalty_card.pending_points.ADDED",
        "  Voucher.Loyalty_Card.Pending_Points.Added ",
    ],
)
def test_step_of__matches_both_families_any_case_with_or_without_prefix(name):
    assert step_of(name) is Step.ADDED


@pytest.mark.parametrize("name", ["voucher.published", "voucher.loyalty_card.pending_points.expired", "", "added"])
def test_step_of__other_types_are_not_ours(name):
    assert step_of(name) is None


def test_decode__documented_added_example_as_raw_payload():
    ev = _accepted(_decode(_sample("pending_points_added.json"), {"event-type": ADDED.encode()})).event
    assert (ev.step, ev.entry_id, ev.observation.points) == (Step.ADDED, "lopp_100cc4fac41469454d", 1)
    assert ev.voucher_id == "v_hjQhSsitD6lAATASbRV1Ef7dUCjpy0iw"
    assert ev.customer_id == "cust_IdgAFZxYwwHctOk9pPuMu308"
    assert str(ev.observation.activates_at) == "2025-01-28"
    assert ev.card is not None and ev.card.pending_points == 1234


def test_decode__documented_activated_example_shape_without_balance_or_transaction():
    ev = _accepted(_decode(_sample("pending_points_activated.json"), {"event-type": ACTIVATED.encode()})).event
    assert ev.step is Step.ACTIVATED and ev.observation.points == 5
    # No envelope and no transaction: the activation time falls back to the card's update time.
    assert ev.observation.activated_at.isoformat() == "2025-01-28T08:59:35.814000+00:00"


def test_decode__activated_schema_shape_uses_transaction_time():
    data = _sample("pending_points_activated.json")
    data.pop("voucher_pending_points_balance")
    data["balance"] = {"points": 5, "balance": 30, "total": 2210, "object": "balance"}
    data["transaction"] = {"id": "lcte_1", "type": "PENDING_POINTS_ACTIVATION", "created_at": "2025-01-29T00:00:01Z"}
    ev = _accepted(_decode(data, {"event-type": ACTIVATED.encode()})).event
    assert ev.observation.activated_at.isoformat() == "2025-01-29T00:00:01+00:00"


def test_decode__project_webhook_envelope_reads_type_and_event_metadata():
    body = {"id": "whs_1", "type": ADDED, "created_at": "2025-01-28T09:00:00Z", "project_id": "proj_1",
            "data": _sample("pending_points_added.json"), "source": {"id": "wh_1", "object": "webhook"},
            "event": {"id": "evcus_1", "type": ADDED, "created_at": "2025-01-28T08:59:59Z"}}
    ev = _accepted(_decode(body)).event
    assert ev.event_id == "evcus_1" and ev.observation.occurred_at.isoformat() == "2025-01-28T08:59:59+00:00"


def test_decode__distribution_envelope_uses_event_type_not_the_user_typed_name():
    body = {"id": "whs_2", "type": "Points for the CRM", "data": _sample("pending_points_added.json"),
            "event": {"id": "ev_2", "type": "customer.voucher.loyalty_card.pending_points.canceled"}}
    assert _accepted(_decode(body)).event.step is Step.CANCELED


def test_decode__header_type_wins_over_the_envelope():
    body = {"type": ADDED, "data": _sample("pending_points_added.json"), "event": {"type": ADDED}}
    assert _accepted(_decode(body, {"event-type": ACTIVATED.encode()})).event.step is Step.ACTIVATED


def test_decode__unknown_fields_and_absent_optional_parts_are_tolerated():
    data = {"pending_points": {"id": "lopp_1", "voucher_id": "v_1", "customer_id": "c_1", "points": 0,
                               "brand_new_field": {"x": [1, 2]}}, "another_new_thing": True}
    ev = _accepted(_decode(data, {"event-type": ADDED.encode()})).event
    assert ev.card is None and ev.observation.activates_at is None


def test_decode__ids_fall_back_to_voucher_and_customer_objects():
    data = _sample("pending_points_added.json")
    del data["pending_points"]["voucher_id"], data["pending_points"]["customer_id"]
    ev = _accepted(_decode(data, {"event-type": ADDED.encode()})).event
    assert (ev.voucher_id, ev.customer_id) == ("v_hjQhSsitD6lAATASbRV1Ef7dUCjpy0iw", "cust_IdgAFZxYwwHctOk9pPuMu308")


@pytest.mark.parametrize(
    "body, headers",
    [
        ({"id": "whs", "type": "voucher.published", "data": {"voucher": {}}, "event": {"type": "voucher.published"}}, {}),
        ({"anything": 1}, {"event-type": b"customer.order.paid"}),
    ],
)
def test_decode__other_voucherify_types_are_skipped_not_dead_lettered(body, headers):
    assert isinstance(_decode(body, headers), Skipped)


def _pp(**changes):
    data = _sample("pending_points_added.json")
    for k, v in changes.items():
        if v is None:
            data["pending_points"].pop(k)
        else:
            data["pending_points"][k] = v
    return {"type": ADDED, "data": data}


@pytest.mark.parametrize(
    "body, headers, code",
    [
        (b"not json", {}, "invalid_json"),
        (b"\xff\xfe\x00\x01", {}, "invalid_json"),
        (b'{"type": "\xff"}', {}, "invalid_json"),
        (b"[1, 2]", {}, "not_an_object"),
        (b"42", {}, "not_an_object"),
        (None, {}, "empty"),
        (b"", {}, "empty"),
        (_sample("pending_points_added.json"), {}, "missing_type"),
        (_pp(id=None), {}, "invalid_payload"),
        (_pp(id=""), {}, "invalid_payload"),
        (_pp(points=-1), {}, "invalid_payload"),
        (_pp(points=1.5), {}, "invalid_payload"),
        (_pp(points=2.0), {}, "invalid_payload"),
        (_pp(points="10"), {}, "invalid_payload"),
        (_pp(points=True), {}, "invalid_payload"),
        (_pp(points=2**63), {}, "invalid_payload"),
        (_pp(points=None), {}, "invalid_payload"),
        (_pp(activates_at="2025-13-01"), {}, "invalid_payload"),
        (_pp(activates_at="next week"), {}, "invalid_payload"),
        (_pp(activates_at=1738108800), {}, "invalid_payload"),
        (_pp(activates_at="2025-01-29T00:00:00Z"), {}, "invalid_payload"),
        (_pp(created_at=17), {}, "invalid_payload"),
        ({"type": ADDED, "data": {"pending_points": []}}, {}, "invalid_payload"),
        ({"type": ADDED, "event": "x", "data": {"a": 1}}, {}, "invalid_envelope"),
        (b'{"pending_points": {"id": "lopp_1", "points": 1}}', {"event-type": b"\xff"}, "bad_header"),
        (b"[" * 100_000 + b"]" * 100_000, {}, "invalid_json"),
        (b'{"a":' * 10_000 + b"1" + b"}" * 10_000, {}, "invalid_json"),
    ],
)
def test_decode__bad_input_is_rejected_with_a_reason(body, headers, code):
    result = _decode(body, headers)
    assert isinstance(result, Rejected), result
    assert result.reason.code == code and result.reason.detail


def test_decode__missing_customer_and_voucher_ids_are_rejected():
    data = _sample("pending_points_added.json")
    del data["pending_points"]["customer_id"], data["customer"]
    result = _decode(data, {"event-type": ADDED.encode()})
    assert isinstance(result, Rejected) and "customer" in result.reason.detail
    data = _sample("pending_points_added.json")
    del data["pending_points"]["voucher_id"], data["voucher"]
    result = _decode(data, {"event-type": ADDED.encode()})
    assert isinstance(result, Rejected) and "voucher" in result.reason.detail


def test_decode__oversized_value_is_rejected_before_parsing():
    result = _decode(b'{"x": "' + b"a" * 5000 + b'"}', max_bytes=1024)
    assert isinstance(result, Rejected) and result.reason.code == "too_large"


def test_decode__event_type_header_name_is_case_insensitive():
    ev = _accepted(_decode(_sample("pending_points_added.json"), {"Event-Type": ADDED.encode()})).event
    assert ev.step is Step.ADDED
