"""GET /vouchers/{voucher_id}?limit=&after=: the card's totals and its entries, newest first, one page at a time."""
from __future__ import annotations

import datetime as dt

from app.compat import internals
from app.logic import cards
from app.main import app, cards_table, entries_table, project_tz, settings
from app.models import codec
from app.models.records import EntryRecord
from app.views.routing import owner_routed

DEFAULT_LIMIT, MAX_LIMIT = 100, 1000


@app.page("/vouchers/{voucher_id}")
@owner_routed(cards_table, match_info="voucher_id")
async def get_voucher(web, request, voucher_id: str):
    try:
        limit = int(request.query.get("limit", DEFAULT_LIMIT))
        if not 1 <= limit <= MAX_LIMIT:
            raise ValueError
    except ValueError:
        return web.json({"error": "bad_limit", "detail": f"limit must be an integer in 1..{MAX_LIMIT}"}, status=400)
    after = request.query.get("after") or None
    raw = cards_table.get(voucher_id.encode())
    if raw is None:
        return web.json({"error": "not_found", "detail": f"unknown voucher {voucher_id!r}"}, status=404)
    card, upgraded = cards.load(raw, settings.retire_after)
    if upgraded:  # old whole-card format, not converted yet: page the converted rows in memory
        rows = sorted(upgraded.values(), key=lambda r: -r.seq)
        if after is not None:
            ids = [r.entry.id for r in rows]
            if after not in ids:
                return _bad_cursor(web, after)
            rows = rows[ids.index(after) + 1:]
        page, more = rows[:limit], len(rows) > limit
    else:
        found = _page(voucher_id, limit, after)
        if found is None:
            return _bad_cursor(web, after)
        page, more = found
    next_after = page[-1].entry.id if more and page else None
    body = cards.view(card, page, next_after, now=dt.datetime.now(dt.timezone.utc), tz=project_tz,
                      grace=settings.overdue_grace)
    return web.bytes(codec.dump(body), content_type="application/json")


def _bad_cursor(web, after: str):
    return web.json({"error": "bad_cursor", "detail": f"after={after!r} is not an entry of this card"}, status=400)


def _page(voucher_id: str, limit: int, after: str | None) -> tuple[list[EntryRecord], bool] | None:
    """Up to `limit` entry rows from the card's index, newest first, after the entry `after`; and whether more
    follow. None if `after` is not an entry of the card. Reads this worker's RocksDB partitions directly
    (Faust's store has no range reads): the card's partition is the one holding its index keys."""
    prefix = cards.index_prefix(voucher_id)
    for db in internals.partition_dbs(entries_table).values():
        start = prefix
        if after is not None:
            cursor = db.get(cards.entry_key(voucher_id, after))
            if cursor is None:
                continue
            rec = codec.load(EntryRecord, cursor)
            start = cards.index_key(voucher_id, rec.seq, after) + b"\x00"
        page: list[EntryRecord] = []
        seen = False
        for key, _ in db.items(from_key=start):
            if not key.startswith(prefix):
                break
            seen = True
            seq, entry_id = cards.parse_index_key(voucher_id, key)
            value = db.get(cards.entry_key(voucher_id, entry_id))
            if value is None:
                continue
            rec = codec.load(EntryRecord, value)
            if rec.seq != seq:  # a stale index key (the entry was placed again after a crash)
                continue
            if len(page) == limit:
                return page, True
            page.append(rec)
        if seen or after is not None:
            return page, False
    return (None if after is not None else ([], False))
