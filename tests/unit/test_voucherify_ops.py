"""Pure parts of the operator commands and the drift/overdue views: the API client's paging and retries against a
scripted transport, the backfill's delivery shape, drift and overdue on a card aggregate."""
from __future__ import annotations

import asyncio
import datetime as dt
import json

import httpx
import pytest

from app.cli import backfill
from app.logic import cards
from app.logic.decode import Accepted, decode
from app.models.records import CardAgg, CardSnapshot, Owner, Status
from app.cli.voucherify import Client, IncompleteListing, VoucherifyError, card_pending_points

UTC = dt.timezone.utc
ENTRY = {"id": "lopp_1", "voucher_id": "v_1", "campaign_id": "camp_1", "customer_id": "cust_1", "order_id": "ord_1",
         "points": 7, "activates_at": "2025-01-16", "details": {}, "created_at": "2025-01-15T16:51:04.708Z"}


def _client(handler, max_retries: int = 3) -> tuple[Client, list[float]]:
    slept: list[float] = []

    async def sleep(s: float) -> None:
        slept.append(s)

    c = Client("https://api.example", "id", "token", max_retries=max_retries, sleep=sleep,
               transport=httpx.MockTransport(handler))
    return c, slept


def test_client__pages_with_the_cursor_and_waits_retry_after_on_429():
    calls = []

    def handler(request: httpx.Request) -> httpx.Response:
        calls.append(dict(request.url.params))
        assert request.headers["X-App-Id"] == "id" and request.headers["X-App-Token"] == "token"
        if len(calls) == 2:
            return httpx.Response(429, headers={"Retry-After": "3"}, json={"code": 429})
        if "starting_after_id" not in request.url.params:
            return httpx.Response(200, json={"data": [ENTRY], "has_more": True, "more_starting_after": "lopp_1"})
        return httpx.Response(200, json={"data": [dict(ENTRY, id="lopp_2")], "has_more": False})

    async def scenario():
        c, slept = _client(handler)
        pages = [p async for p in c.pending_points(campaign_id="camp_1")]
        return pages, slept, c.stats

    pages, slept, stats = asyncio.run(scenario())
    assert [[e["id"] for e in p] for p, _ in pages] == [["lopp_1"], ["lopp_2"]]
    assert [after for _, after in pages] == ["lopp_1", None]  # the cursor to resume after each page; None: done
    assert calls[1] == calls[2] == {"limit": "100", "order": "id", "starting_after_id": "lopp_1"}
    assert slept == [3.0] and stats.rate_limited == 1


def test_client__5xx_is_retried_with_back_off_and_4xx_is_an_error_with_the_body():
    answers = [503, 502, 404]

    def handler(request):
        return httpx.Response(answers.pop(0), json={"code": 404, "message": "Cannot find campaign with id x"})

    async def scenario():
        c, slept = _client(handler)
        with pytest.raises(VoucherifyError, match="404.*Cannot find campaign"):
            await c.get("/v1/loyalties/x/members")
        return slept

    slept = asyncio.run(scenario())
    assert len(slept) == 2 and 0.25 <= slept[0] <= 0.5 and 0.5 <= slept[1] <= 1.0


def test_backfill_delivery__is_a_raw_payload_the_processor_folds_and_says_where_it_came_from():
    key, value, headers = backfill.delivery(ENTRY)
    assert key == b"v_1" and dict(headers)["source"] == b"backfill"
    decoded = decode(value, dict(headers), max_bytes=1 << 20)
    assert isinstance(decoded, Accepted) and decoded.event.step.value == "added"
    assert decoded.event.observation.points == 7 and decoded.event.customer_id == "cust_1"
    assert json.loads(value)["pending_points"] == ENTRY
    # adjusted: still an `added` (a later activation joins with it), with the current points and updated_at
    _, value, headers = backfill.delivery(dict(ENTRY, updated_at="2025-01-15T18:00:00Z", points=9))
    adjusted = decode(value, dict(headers), max_bytes=1 << 20).event
    assert adjusted.step.value == "added" and adjusted.observation.points == 9


def test_card_pending_points__missing_or_null_is_unknown_not_zero():
    assert card_pending_points({"loyalty_card": {"pending_points": 5}}) == 5
    assert card_pending_points({"loyalty_card": {"pending_points": 0}}) == 0
    assert card_pending_points({"loyalty_card": {"pending_points": None}}) is None
    assert card_pending_points({}) is None


def test_client__a_campaign_larger_than_the_member_listing_is_reported_not_silently_cut():
    def handler(request):
        page = int(request.url.params["page"])
        return httpx.Response(200, json={"vouchers": [{"id": f"v_{page}_{i}"} for i in range(100)], "total": 10_500})

    async def scenario():
        c, _ = _client(handler)
        seen = []
        with pytest.raises(IncompleteListing, match="10,500 cards"):
            async for card in c.members("camp_1"):
                seen.append(card)
        return seen

    assert len(asyncio.run(scenario())) == 10_000


def _card(live, snapshot_pending=None, as_of=None) -> CardAgg:
    snap = CardSnapshot(points=0, pending_points=snapshot_pending, as_of=as_of) if snapshot_pending is not None \
        else None
    return CardAgg(voucher_id="v_1", owner=Owner(customer_id="c", stamp=(None, None, None)), snapshot=snap,
                   live=live)


def test_overdue__pending_entries_past_their_activation_day_plus_grace_in_project_time():
    tz = dt.timezone(dt.timedelta(hours=2))
    live = {"due": (0, Status.PENDING, 5, dt.date(2025, 1, 10), None, 0),
            "later": (1, Status.PENDING, 5, dt.date(2025, 1, 12), None, 0),
            "done": (2, Status.ACTIVATED, 5, None, dt.datetime(2025, 1, 10, tzinfo=UTC), 0)}
    now = dt.datetime(2025, 1, 11, 1, 0, tzinfo=UTC)  # 03:00 on the 11th in project time: 27 h after the 10th began
    assert cards.overdue(_card(live), now, tz, dt.timedelta(hours=26)) == ["due"]
    assert cards.overdue(_card(live), now, tz, dt.timedelta(hours=28)) == []


def test_drift__voucherifys_pending_total_against_ours_settled_after_the_retry_window():
    live = {"a": (0, Status.PENDING, 5, dt.date(2025, 1, 10), None, 0)}
    as_of = dt.datetime(2025, 1, 1, tzinfo=UTC)
    d = cards.drift(_card(live, snapshot_pending=12, as_of=as_of), as_of + dt.timedelta(hours=1))
    assert (d.voucherify_pending_points, d.derived_pending_points, d.difference, d.settled) == (12, 5, 7, False)
    assert cards.drift(_card(live, snapshot_pending=12, as_of=as_of), as_of + dt.timedelta(hours=25)).settled
    assert cards.drift(_card(live), as_of) is None  # no card snapshot (backfilled only): unknown
