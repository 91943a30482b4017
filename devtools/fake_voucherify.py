"""A stand-in for Voucherify's REST API, built from its public reference, for tests and benchmarks (no network).

A real HTTP server (stdlib, in a thread) holding one programme: loyalty campaigns, their cards and pending entries
(`devtools.simulate.Entry`, so the webhooks and the API describe the same truth). It imitates what the operator
commands rely on (voucherifyio/voucherify-openapi, legacy loyalty API):
- `GET /v1/loyalties` (page paging, `campaigns`), `GET /v1/loyalties/{campaignId}/members` (page <= 100,
  `vouchers`, each with `loyalty_card.pending_points`), `GET /v1/loyalties/{campaignId}/pending-points` and
  `GET /v1/loyalties/members/{memberId}/pending-points` (only PENDING entries, no `status`, `limit` 1..100,
  `order=id|-id`, `starting_after_id`, `has_more`, `more_starting_after`);
- `X-App-Id` / `X-App-Token` (401 otherwise), the `Error` object on 4xx, 404 for unknown campaigns and cards;
- rate limiting on demand (`rate_limit_every`: 429 with `Retry-After`, `X-Rate-Limit-*`), 5xx on demand.
It does not imitate: OAuth, other endpoints, filters, the `-id` order's exact tie-breaks, real rate-limit windows.
"""
from __future__ import annotations

import bisect
import json
import re
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlparse

from devtools.embedded_broker import free_port
from devtools.simulate import Entry, iso

APP_ID, APP_TOKEN = "test-app-id", "test-app-token"


def card_code(voucher_id: str) -> str:
    """The card's code (what the member endpoints call `memberId`): as the simulator's webhooks carry it."""
    return voucher_id[-6:]


def api_entry(e: Entry) -> dict:
    """An entry as the pending-points lists return it (LoyaltyPendingPoints)."""
    out = {"id": e.id, "voucher_id": e.voucher_id, "campaign_id": e.campaign_id, "customer_id": e.customer_id,
           "order_id": e.order_id, "points": e.points, "activates_at": e.activates_at.isoformat(),
           "details": {"event": {"type": "customer.order.paid"}, "earning_rule": {"id": "ern_x"},
                       "order": {"id": e.order_id, "source_id": None}},
           "created_at": iso(e.created_at)}
    if len(e.events) > 1:  # adjusted (or finished, then it is not listed at all)
        out["updated_at"] = iso(e.events[-1].at)
    return out


@dataclass
class Programme:
    entries: dict[str, Entry] = field(default_factory=dict)
    rate_limit_every: int = 0  # every n-th request answers 429 (0: never)
    fail_next: list[int] = field(default_factory=list)  # statuses to answer the next requests with
    requests: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)

    def add(self, entries: Iterable[Entry]) -> None:
        for e in entries:
            self.entries[e.id] = e
        self._index = None

    _index: dict | None = None

    def _listing(self, campaign_id: str | None, code: str | None) -> tuple[list[Entry], list[str]]:
        """PENDING entries of a campaign or a card, by id, and their ids (indexed once: a 100k-entry programme
        pages fast)."""
        if self._index is None:
            index: dict = {}
            for e in self.pending():
                for k in (("campaign", e.campaign_id), ("card", card_code(e.voucher_id))):
                    entries, ids = index.setdefault(k, ([], []))
                    entries.append(e)
                    ids.append(e.id)
            self._index = index
        return self._index.get(("campaign", campaign_id) if campaign_id else ("card", code), ([], []))

    def campaigns(self) -> list[str]:
        return sorted({e.campaign_id for e in self.entries.values()})

    def pending(self) -> list[Entry]:
        return sorted((e for e in self.entries.values() if e.status == "PENDING"), key=lambda e: e.id)

    def cards(self, campaign_id: str) -> list[dict]:
        by_card: dict[str, dict] = {}
        for e in sorted(self.entries.values(), key=lambda e: (e.created_at, e.id)):
            if e.campaign_id != campaign_id:
                continue
            card = by_card.setdefault(e.voucher_id, {
                "id": e.voucher_id, "code": card_code(e.voucher_id), "campaign_id": campaign_id,
                "type": "LOYALTY_CARD", "holder_id": e.customer_id, "object": "voucher",
                "loyalty_card": {"points": 0, "balance": 0, "pending_points": 0}})
            if e.status == "PENDING":
                card["loyalty_card"]["pending_points"] += e.points
            elif e.status == "ACTIVATED":
                card["loyalty_card"]["points"] += e.points
                card["loyalty_card"]["balance"] += e.points
        return list(by_card.values())


def _error(status: int, key: str, message: str) -> tuple[int, dict]:
    return status, {"code": status, "key": key, "message": message, "details": message, "request_id": "v-test"}


class _Handler(BaseHTTPRequestHandler):
    programme: Programme

    def log_message(self, *args) -> None:  # quiet
        return None

    def do_GET(self) -> None:  # noqa: N802
        p = self.programme
        with p.lock:
            p.requests += 1
            n = p.requests
            forced = p.fail_next.pop(0) if p.fail_next else None
        headers = {"X-Rate-Limit-Limit": "100", "X-Rate-Limit-Remaining": "50"}
        if self.headers.get("X-App-Id") != APP_ID or self.headers.get("X-App-Token") != APP_TOKEN:
            status, body = _error(401, "unauthorized", "Unauthorized")
        elif forced is not None:
            status, body = _error(forced, "server_error", "injected failure")
        elif p.rate_limit_every and n % p.rate_limit_every == 0:
            status, body = 429, {"code": 429, "message": "Too many requests hit the API too quickly."}
            headers.update({"Retry-After": "0", "X-Rate-Limit-Remaining": "0", "X-Rate-Limit-Type": "api_calls",
                            "X-Rate-Limit-Retry": str(int(time.time()))})
        else:
            status, body = self._route()
        raw = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(raw)))
        for k, v in headers.items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(raw)

    def _route(self) -> tuple[int, dict]:
        url = urlparse(self.path)
        q = {k: v[-1] for k, v in parse_qs(url.query).items()}
        p = self.programme
        try:
            limit = int(q.get("limit", "10"))
            page = int(q.get("page", "1"))
        except ValueError:
            return _error(400, "invalid_query_params", "limit and page must be integers")
        if not 1 <= limit <= 100 or not 1 <= page <= 100:
            return _error(400, "invalid_query_params", "limit must be 1..100, page 1..100")
        with p.lock:
            if url.path == "/v1/loyalties":
                items = [{"id": c, "name": c, "campaign_type": "LOYALTY_PROGRAM", "object": "campaign"}
                         for c in p.campaigns()]
                return 200, {"object": "list", "data_ref": "campaigns", "total": len(items),
                             "campaigns": items[(page - 1) * limit:page * limit]}
            if m := re.fullmatch(r"/v1/loyalties/([^/]+)/members", url.path):
                if m[1] not in p.campaigns():
                    return _error(404, "not_found", f"Cannot find campaign with id {m[1]}")
                cards = p.cards(m[1])
                return 200, {"object": "list", "data_ref": "vouchers", "total": len(cards),
                             "vouchers": cards[(page - 1) * limit:page * limit]}
            if m := re.fullmatch(r"/v1/loyalties/members/([^/]+)/pending-points", url.path):
                entries, ids = p._listing(None, m[1])
                if not entries and not any(card_code(e.voucher_id) == m[1] for e in p.entries.values()):
                    return _error(404, "not_found", f"Cannot find voucher with id {m[1]}")
            elif m := re.fullmatch(r"/v1/loyalties/([^/]+)/pending-points", url.path):
                entries, ids = p._listing(m[1], None)
                if not entries and m[1] not in p.campaigns():
                    return _error(404, "not_found", f"Cannot find campaign with id {m[1]}")
            else:
                return _error(404, "not_found", f"no route {url.path}")
            after = q.get("starting_after_id")
            if q.get("order") == "-id":
                entries = entries[::-1]
                start = 0 if not after else next((i for i, e in enumerate(entries) if e.id < after), len(entries))
            else:
                start = bisect.bisect_right(ids, after) if after else 0
            chunk, more = entries[start:start + limit], len(entries) > start + limit
            body = {"object": "list", "data_ref": "data", "data": [api_entry(e) for e in chunk], "has_more": more}
            if more:
                body["more_starting_after"] = chunk[-1].id
            return 200, body


class FakeVoucherify:
    """`with FakeVoucherify(programme) as api: api.url` serves the programme until the block ends."""

    def __init__(self, programme: Programme):
        self.programme = programme
        handler = type("Handler", (_Handler,), {"programme": programme})
        self._server = ThreadingHTTPServer(("127.0.0.1", free_port()), handler)
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def env(self) -> dict[str, str]:
        """Settings that point the operator commands here."""
        return {"VOUCHERIFY_API_URL": self.url, "VOUCHERIFY_APP_ID": APP_ID, "VOUCHERIFY_APP_TOKEN": APP_TOKEN}

    def __enter__(self) -> "FakeVoucherify":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(5)
