"""A periodic scan of this worker's cards for what only time reveals: overdue activations and settled drift.

Neither changes with an event (an activation that never comes is the absence of one), so they cannot be kept
up to date by the agents. Every STATE_SCAN_INTERVAL_S the worker reads the aggregates of the card partitions it
owns (not standbys) and counts:
- overdue entries: PENDING more than OVERDUE_GRACE_H after `activates_at` (00:00 project time): an activation
  delivery was most likely lost (`python -m app reconcile` lists them per card, `GET /vouchers/{id}` too);
- drifting cards: Voucherify's pending total (from the newest delivery's card) differs from ours; `in_flight`
  while that figure is younger than Voucherify's 24 h of retries (a delivery may still come), `settled` after
  (a delivery was lost: reconcile and repair).
The scan reads every aggregate of the active partitions, so its cost grows with the cards a worker holds (about
what loading them costs; `pending_points_scan_seconds` shows it): raise STATE_SCAN_INTERVAL_S on large workers.
It yields to the event loop every 500 cards.
"""
from __future__ import annotations

import asyncio
import datetime as dt
import logging
import time

from app.compat import internals
from app.logic import cards
from app.main import app, cards_table, project_tz, settings
from app.ops.health import dbs_by_role, not_ready_reason

logger = logging.getLogger(__name__)

_last: dict = {"overdue": 0, "in_flight": 0, "settled": 0, "seconds": 0.0}


async def scan() -> dict:
    now = dt.datetime.now(dt.timezone.utc)
    started = time.monotonic()
    counts = {"overdue": 0, "in_flight": 0, "settled": 0, "cards": 0}
    for role, db in dbs_by_role(cards_table):
        if role != "active":
            continue
        for key, raw in db.items():
            if cards.LEGACY_SEP in key or key == internals.OFFSET_KEY:  # converted-entry copies, Faust's marker
                continue
            try:
                card, _ = cards.load(raw, settings.retire_after)
            except ValueError:
                continue
            counts["cards"] += 1
            counts["overdue"] += len(cards.overdue(card, now, project_tz, settings.overdue_grace))
            d = cards.drift(card, now)
            if d is not None and d.difference:
                counts["settled" if d.settled else "in_flight"] += 1
            if counts["cards"] % 500 == 0:
                await asyncio.sleep(0)
    _last.update(counts, seconds=round(time.monotonic() - started, 3))
    return counts


@app.timer(interval=settings.state_scan_interval_s)
async def periodic_scan() -> None:
    if not_ready_reason() is not None:
        return
    try:
        await scan()
    except Exception:  # a metric must never take the worker down
        logger.exception("card scan failed")


def gauges() -> dict:
    return {
        "overdue_entries": ("PENDING entries past activates_at + OVERDUE_GRACE_H, on this worker's cards (last scan)",
                            [], [([], float(_last["overdue"]))]),
        "drifting_cards": ("Cards whose Voucherify pending total differs from ours (last scan); settled: the "
                           "figure is older than Voucherify's 24 h of retries", ["state"],
                           [(["in_flight"], float(_last["in_flight"])), (["settled"], float(_last["settled"]))]),
        "scan_seconds": ("How long the last card scan took", [], [([], float(_last["seconds"]))]),
    }
