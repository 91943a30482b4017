"""Voucherify's REST API, the few calls the operator commands need (legacy loyalty API, `/v1/loyalties`).

Endpoints (voucherifyio/voucherify-openapi, `documentation/openapi/loyalties.json`; deprecated on 2026-07-21 as the
"legacy loyalty API", still served; the pending-points webhooks belong to the same legacy cards):
- `GET /v1/loyalties/{campaignId}/pending-points` and `GET /v1/loyalties/members/{memberId}/pending-points`:
  entries still PENDING (no `status` field), cursor paging: `limit` <= 100, `order=id`, `starting_after_id`;
  the answer has `data`, `has_more`, `more_starting_after`.
- `GET /v1/loyalties?limit=&page=`: loyalty campaigns (`campaigns`, `total`).
- `GET /v1/loyalties/{campaignId}/members?limit=&page=`: the campaign's cards (`vouchers`, page <= 100), each with
  `loyalty_card.pending_points` (missing or null: 0).

Auth: `X-App-Id` / `X-App-Token`. Rate limits depend on the plan (100/min to 2,000/min, sandbox 100/hour): a 429
is retried after `Retry-After` (or `X-Rate-Limit-Retry`, epoch seconds), 5xx and network errors with exponential
back-off, up to VOUCHERIFY_MAX_RETRIES times per call. httpx, not Voucherify's SDK: the SDK is synchronous and
generated for every endpoint, and does not expose the rate-limit headers a long backfill needs to pace itself.
"""
from __future__ import annotations

import asyncio
import email.utils
import random
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import httpx

from app.settings import Settings

PAGE = 100  # the API's largest page
MEMBER_PAGES = 100  # `page` stops at 100 for member lists: about 10,000 cards per campaign query


class VoucherifyError(RuntimeError):
    def __init__(self, status: int, body: str, url: str):
        super().__init__(f"Voucherify answered {status} for {url}: {body[:300]}")
        self.status = status


@dataclass
class CallStats:
    requests: int = 0
    retries: int = 0
    rate_limited: int = 0


def _retry_after(response: httpx.Response) -> float | None:
    value = response.headers.get("Retry-After")
    if value:
        try:
            return max(float(value), 0.0)
        except ValueError:
            when = email.utils.parsedate_to_datetime(value)
            return max(when.timestamp() - time.time(), 0.0) if when else None
    reset = response.headers.get("X-Rate-Limit-Retry")
    if reset:
        try:
            return max(float(reset) - time.time(), 0.0)
        except ValueError:
            return None
    return None


class Client:
    """An async client of the endpoints above; `async with Client.from_settings(s) as api: ...`."""

    def __init__(self, base_url: str, app_id: str, app_token: str, *, max_retries: int = 8,
                 timeout_s: float = 30.0, sleep: Callable[[float], Awaitable[Any]] = asyncio.sleep,
                 max_backoff_s: float = 60.0, transport: httpx.AsyncBaseTransport | None = None):
        self._http = httpx.AsyncClient(base_url=base_url, timeout=timeout_s, transport=transport, headers={
            "X-App-Id": app_id, "X-App-Token": app_token, "Accept": "application/json",
            "User-Agent": "pending-points-backfill"})
        self._max_retries = max_retries
        self._sleep = sleep
        self._max_backoff_s = max_backoff_s
        self.stats = CallStats()

    @classmethod
    def from_settings(cls, settings: Settings) -> "Client":
        if settings.voucherify_app_id is None or settings.voucherify_app_token is None:
            raise SystemExit("VOUCHERIFY_APP_ID and VOUCHERIFY_APP_TOKEN must be set for Voucherify's API")
        return cls(settings.voucherify_base_url, settings.voucherify_app_id.get_secret_value(),
                   settings.voucherify_app_token.get_secret_value(), max_retries=settings.voucherify_max_retries)

    async def __aenter__(self) -> "Client":
        return self

    async def __aexit__(self, *exc) -> None:
        await self._http.aclose()

    async def get(self, path: str, params: dict[str, Any] | None = None) -> dict:
        """GET a JSON object; retries 429, 5xx and network errors; raises VoucherifyError on any other answer."""
        attempt = 0
        while True:
            self.stats.requests += 1
            try:
                response = await self._http.get(path, params=params)
            except httpx.TransportError as exc:
                response, error = None, exc
            else:
                error = None
                if response.status_code == 200:
                    return response.json()
                if response.status_code != 429 and response.status_code < 500:
                    raise VoucherifyError(response.status_code, response.text, str(response.url))
            if attempt >= self._max_retries:
                if response is not None:
                    raise VoucherifyError(response.status_code, response.text, str(response.url))
                raise error  # type: ignore[misc]
            wait = None
            if response is not None and response.status_code == 429:
                self.stats.rate_limited += 1
                wait = _retry_after(response)
            if wait is None:  # exponential back-off with jitter: 0.5, 1, 2, 4 ... s
                wait = min(self._max_backoff_s, 0.5 * 2 ** attempt) * (0.5 + random.random() / 2)
            attempt += 1
            self.stats.retries += 1
            await self._sleep(wait)

    async def pending_points(self, *, campaign_id: str | None = None, member_id: str | None = None,
                             after: str | None = None) -> AsyncIterator[tuple[list[dict], str | None]]:
        """Pages of PENDING entries of a campaign or of one card (its code), in id order, from after the entry
        `after`: (entries, the cursor to resume after this page; None once the list is done)."""
        if (campaign_id is None) == (member_id is None):
            raise ValueError("one of campaign_id, member_id")
        path = (f"/v1/loyalties/{campaign_id}/pending-points" if campaign_id
                else f"/v1/loyalties/members/{member_id}/pending-points")
        while True:
            params: dict[str, Any] = {"limit": PAGE, "order": "id"}
            if after:
                params["starting_after_id"] = after
            page = await self.get(path, params)
            data = page.get("data") or []
            more = bool(page.get("has_more"))
            after = page.get("more_starting_after") or (data[-1]["id"] if data else after)
            yield data, after if more else None
            if not more or not data:
                return

    async def loyalty_campaigns(self) -> AsyncIterator[dict]:
        for page in range(1, 101):
            body = await self.get("/v1/loyalties", {"limit": PAGE, "page": page})
            campaigns = body.get("campaigns") or []
            for campaign in campaigns:
                yield campaign
            if len(campaigns) < PAGE:
                return

    async def members(self, campaign_id: str) -> AsyncIterator[dict]:
        """The campaign's cards (LoyaltyMember objects), up to the API's 100 pages of 100; IncompleteListing after
        the last one if the campaign has more (`total`)."""
        listed = 0
        for page in range(1, MEMBER_PAGES + 1):
            body = await self.get(f"/v1/loyalties/{campaign_id}/members",
                                  {"limit": PAGE, "page": page, "order": "created_at"})
            cards = body.get("vouchers") or []
            for card in cards:
                yield card
            listed += len(cards)
            if len(cards) < PAGE:
                return
        total = body.get("total")
        if isinstance(total, int) and total > listed:
            raise IncompleteListing(f"campaign {campaign_id} has {total:,} cards; the API lists {listed:,} per query")


def card_pending_points(card: dict) -> int | None:
    """`loyalty_card.pending_points` of a card object; None when the API left it out (its list examples never show
    it): then the card's pending list is the figure to use."""
    value = (card.get("loyalty_card") or {}).get("pending_points")
    return None if value is None else int(value)


class IncompleteListing(RuntimeError):
    """The API pages no further than this (member lists stop at page 100): some cards were not listed."""
