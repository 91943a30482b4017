"""Reconcile: what the service derived against Voucherify's own numbers, per card.

    python -m app reconcile [--worker URL] [--campaign ID ...] [--output FILE.json|FILE.csv] [--repair]

For every card of the loyalty campaigns (all, or the ones given), Voucherify's `loyalty_card.pending_points`
against our pending total for that voucher (`GET /vouchers/{id}` on any worker: it routes to the owner). Where
they differ, or we hold overdue entries, the entry ids on both sides: `missing_here` (PENDING in Voucherify,
absent or not PENDING here: a lost added/updated delivery, or one still in flight) and `extra_here` (PENDING here,
not in Voucherify's list: a lost activation or cancellation). Prints a table, writes JSON or CSV with --output,
and exits 1 if any card drifted, 2 if some could not be compared (an error, or a campaign larger than the
API's 10,000-card listing), 0 if all agree. `--repair` backfills exactly the drifting cards from Voucherify's
per-card list (fixes `missing_here`; `extra_here` cannot be fixed from the API, which lists only PENDING entries:
re-send those deliveries from Voucherify's audit log).
"""
from __future__ import annotations

import argparse
import asyncio
import csv
import json
import sys
import tempfile
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

import httpx

from app.cli import backfill
from app.settings import Settings, get_settings
from app.cli.voucherify import Client, IncompleteListing, VoucherifyError, card_pending_points

CONCURRENCY = 8


@dataclass
class Row:
    voucher_id: str
    code: str
    customer_id: str | None
    campaign_id: str
    voucherify_pending: int
    our_pending: int
    difference: int
    missing_here: list[str] = field(default_factory=list)
    extra_here: list[str] = field(default_factory=list)
    overdue: list[str] = field(default_factory=list)
    error: str | None = None  # this card could not be compared

    @property
    def drifted(self) -> bool:
        return self.error is None and bool(self.difference or self.missing_here or self.extra_here)


async def _ours(http: httpx.AsyncClient, voucher_id: str, all_entries: bool) -> tuple[int, list[dict], list[str]]:
    """(pending total, entries if asked, overdue ids) from the worker; a card it does not know: (0, [], [])."""
    entries, after = [], None
    while True:
        params = {"limit": 1000 if all_entries else 1, **({"after": after} if after else {})}
        r = await http.get(f"/vouchers/{voucher_id}", params=params)
        if r.status_code == 404:
            return 0, [], []
        r.raise_for_status()
        body = r.json()
        entries += body["entries"]
        after = body.get("next_after")
        if not all_entries or after is None:
            return body["pending_points"], entries, body.get("overdue", [])


async def _card(api: Client, http: httpx.AsyncClient, campaign_id: str, card: dict) -> Row:
    theirs = card_pending_points(card)
    vf: dict | None = None
    if theirs is None:  # not in the card object: sum the card's pending list instead
        vf = await _their_entries(api, card.get("code") or "")
        theirs = sum(e["points"] for e in vf.values())
    ours, _, overdue = await _ours(http, card["id"], all_entries=False)
    row = Row(card["id"], card.get("code") or "", card.get("holder_id"), campaign_id, theirs, ours, theirs - ours,
              overdue=overdue)
    if row.difference or overdue:
        if vf is None:
            vf = await _their_entries(api, row.code)
        _, entries, _ = await _ours(http, card["id"], all_entries=True)
        here = {e["id"]: e for e in entries}
        row.missing_here = sorted(i for i, e in vf.items()
                                  if i not in here or here[i]["status"] != "PENDING" or here[i]["points"] != e["points"])
        row.extra_here = sorted(i for i, e in here.items() if e["status"] == "PENDING" and i not in vf)
    return row


async def _their_entries(api: Client, code: str) -> dict[str, dict]:
    out: dict[str, dict] = {}
    async for page, _after in api.pending_points(member_id=code):
        out.update({e["id"]: e for e in page})
    return out


async def run(settings: Settings, *, worker: str, campaigns: list[str]) -> list[Row]:
    rows: list[Row] = []
    sem = asyncio.Semaphore(CONCURRENCY)
    async with Client.from_settings(settings) as api, httpx.AsyncClient(base_url=worker, timeout=30) as http:
        if not campaigns:
            campaigns = [c["id"] async for c in api.loyalty_campaigns()]

        async def one(campaign_id: str, card: dict) -> None:
            async with sem:
                try:
                    rows.append(await _card(api, http, campaign_id, card))
                except (httpx.HTTPError, VoucherifyError) as exc:  # one card's failure is reported, not fatal
                    rows.append(Row(card.get("id", "?"), card.get("code") or "", card.get("holder_id"), campaign_id,
                                    0, 0, 0, error=repr(exc)[:300]))

        for campaign_id in campaigns:
            await asyncio.gather(*[one(campaign_id, card) async for card in api.members(campaign_id)])
    return sorted(rows, key=lambda r: (not r.drifted, r.campaign_id, r.voucher_id))


def table(rows: list[Row], limit: int = 50) -> str:
    drifted = [r for r in rows if r.drifted]
    errors = [r for r in rows if r.error]
    lines = [f"{len(rows) - len(errors):,} cards compared, {len(drifted):,} drifted, "
             f"{sum(len(r.overdue) for r in rows):,} overdue entries"
             + (f", {len(errors):,} could not be compared (--output FILE lists why)" if errors else "")]
    if drifted:
        lines.append(f"{'voucher':<28}{'code':<10}{'voucherify':>11}{'ours':>8}{'diff':>7}"
                     f"{'missing here':>14}{'extra here':>12}{'overdue':>9}")
        for r in drifted[:limit]:
            lines.append(f"{r.voucher_id:<28}{r.code:<10}{r.voucherify_pending:>11,}{r.our_pending:>8,}"
                         f"{r.difference:>7,}{len(r.missing_here):>14}{len(r.extra_here):>12}{len(r.overdue):>9}")
        if len(drifted) > limit:
            lines.append(f"... {len(drifted) - limit:,} more (--output FILE for all)")
    return "\n".join(lines)


def write(rows: list[Row], path: Path) -> None:
    if path.suffix == ".csv":
        columns = [f.name for f in fields(Row)]
        with path.open("w", newline="") as f:
            w = csv.writer(f)
            w.writerow(columns)
            for r in rows:
                w.writerow([" ".join(v) if isinstance(v, list) else ("" if v is None else v)
                            for v in (getattr(r, c) for c in columns)])
    else:
        path.write_text(json.dumps([asdict(r) | {"drifted": r.drifted} for r in rows], indent=1))


def main(argv: list[str] | None = None) -> int:
    settings = get_settings()
    parser = argparse.ArgumentParser(prog="python -m app reconcile", description=__doc__.splitlines()[0])
    parser.add_argument("--worker", default=settings.advertised_url, help="any worker's web URL (default: this "
                        "host's WEB_ADVERTISED_URL)")
    parser.add_argument("--campaign", action="append", default=[], help="loyalty campaign id (repeatable)")
    parser.add_argument("--output", type=Path, help="write every card's row as JSON (.json) or CSV (.csv)")
    parser.add_argument("--repair", action="store_true", help="backfill the drifting cards from Voucherify")
    args = parser.parse_args(argv)
    try:
        rows = asyncio.run(run(settings, worker=args.worker, campaigns=args.campaign))
    except IncompleteListing as exc:
        print(f"reconcile: incomplete: {exc}; reconcile that campaign's cards with the per-card list "
              "(python -m app backfill --member CODE) or split it", file=sys.stderr)
        return 2
    print(table(rows))
    if args.output:
        write(rows, args.output)
    drifted = [r for r in rows if r.drifted]
    if args.repair and drifted:
        repairable = sorted({r.code for r in drifted if r.missing_here})
        with tempfile.TemporaryDirectory() as tmp:
            result = asyncio.run(backfill.run(settings, campaigns=[], members=repairable,
                                              state_path=Path(tmp) / "state.json", resume=False, progress=False))
        print(f"repair: backfilled {result['entries']:,} entries of {len(repairable):,} cards; "
              f"{sum(1 for r in drifted if r.extra_here):,} cards hold entries Voucherify no longer lists as "
              "PENDING (a lost activation or cancellation: re-send it from Voucherify's audit log)")
    if any(r.error for r in rows):
        return 2
    return 1 if drifted else 0


if __name__ == "__main__":
    sys.exit(main())
