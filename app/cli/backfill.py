"""Backfill: Voucherify's PENDING entries onto `voucherify-webhooks`, as deliveries the processor already folds.

    python -m app backfill [--campaign ID ...] [--member CODE ...] [--resume] [--state FILE] [--dry-run]

Without --campaign or --member: every loyalty campaign. Each entry becomes a raw payload (`{"pending_points":
<the API's entry>}`) keyed by its voucher id, with headers `event-type: voucher.loyalty_card.pending_points.added`
and `source: backfill`. The processor folds it like a webhook: an entry it already has is
unchanged (same id, same observations), so running it twice, or while webhooks flow, changes nothing twice.
Each page is written and acknowledged by the broker before the state file records the cursor after it;
`--resume` goes on from there (a crash re-sends at most one page, which is harmless; a cursor the API no longer
accepts restarts that source).
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import time
from pathlib import Path

from aiokafka import AIOKafkaProducer

import topics
from app.models.webhooks import EVENT_TYPE_HEADER
from app.settings import Settings, get_settings
from app.cli.kafka_io import send_all
from app.cli.voucherify import Client, VoucherifyError

ADDED = "voucher.loyalty_card.pending_points.added"


def delivery(entry: dict) -> tuple[bytes, bytes, list[tuple[str, bytes]]]:
    """(key, value, headers) of one API entry on the input topic: always an `added` (the join with a later
    activation needs one), with the entry's current points and, if adjusted, its `updated_at`: the newest added
    observation, so a late original `added` webhook does not undo an adjustment."""
    value = json.dumps({"pending_points": entry}, separators=(",", ":")).encode()
    return entry["voucher_id"].encode(), value, [(EVENT_TYPE_HEADER, ADDED.encode()),
                                                 (topics.SOURCE, b"backfill")]


class Progress:
    """A progress bar (tqdm) on a terminal, a line every 10 s otherwise."""

    def __init__(self, enabled: bool):
        self.started = time.monotonic()
        self.entries = self.pages = 0
        self._last = self.started
        self._bar = None
        if enabled and sys.stderr.isatty():
            from tqdm import tqdm

            self._bar = tqdm(unit=" entries", desc="backfill", file=sys.stderr, dynamic_ncols=True)

    def add(self, entries: int, source: str, stats) -> None:
        self.entries += entries
        self.pages += 1
        if self._bar is not None:
            self._bar.set_postfix_str(f"{source}, {self.pages} pages, {stats.rate_limited} rate-limited")
            self._bar.update(entries)
        elif time.monotonic() - self._last >= 10:
            self._last = time.monotonic()
            print(f"backfill: {self.entries:,} entries, {self.pages:,} pages, {self.rate():,.0f}/s ({source})",
                  file=sys.stderr, flush=True)

    def rate(self) -> float:
        return self.entries / max(time.monotonic() - self.started, 1e-9)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()


def _load_state(path: Path) -> dict:
    return json.loads(path.read_text()) if path.exists() else {}


def _save_state(path: Path, state: dict) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(state, indent=1, sort_keys=True))
    os.replace(tmp, path)  # atomic: a crash leaves the old state or the new one


async def _source(api: Client, producer, topic: str, kind: str, ident: str, after: str | None, state: dict,
                  state_path: Path, bar: Progress) -> None:
    key = f"{kind}:{ident}"
    async for entries, next_after in api.pending_points(**{f"{kind}_id": ident}, after=after):
        if producer is not None and entries:  # acknowledged, or raises: the cursor must not move past a refusal
            await send_all(producer, topic, map(delivery, entries))
        state[key] = {"after": next_after or (entries[-1]["id"] if entries else after),
                      "finished": next_after is None,
                      "entries": state.get(key, {}).get("entries", 0) + len(entries)}
        _save_state(state_path, state)
        bar.add(len(entries), key, api.stats)


async def run(settings: Settings, *, campaigns: list[str], members: list[str], state_path: Path, resume: bool,
              dry_run: bool = False, progress: bool = True) -> dict:
    state = _load_state(state_path) if resume else {}
    topic = settings.topic_name(topics.WEBHOOKS.name)
    producer = None
    if not dry_run:
        producer = AIOKafkaProducer(**settings.kafka_client_kwargs(), acks="all", linger_ms=5,
                                    max_request_size=settings.kafka_max_record_bytes)
        await producer.start()
    bar = Progress(progress)
    try:
        async with Client.from_settings(settings) as api:
            if not campaigns and not members:
                campaigns = [c["id"] async for c in api.loyalty_campaigns()]
            sources = [("campaign", c) for c in campaigns] + [("member", m) for m in members]
            for kind, ident in sources:
                key = f"{kind}:{ident}"
                done = state.get(key, {})
                if done.get("finished"):
                    continue
                try:
                    await _source(api, producer, topic, kind, ident, done.get("after"), state, state_path, bar)
                except VoucherifyError as exc:
                    if not done.get("after") or exc.status not in (400, 404):
                        raise
                    # the saved cursor's entry may be gone (activated, canceled): start the source over (safe:
                    # folding is idempotent)
                    print(f"backfill: {key}: resuming after {done['after']} refused ({exc.status}); starting it "
                          "over", file=sys.stderr)
                    state[key] = {"after": None, "finished": False, "entries": done.get("entries", 0)}
                    await _source(api, producer, topic, kind, ident, None, state, state_path, bar)
            stats = api.stats
    finally:
        bar.close()
        if producer is not None:
            await producer.stop()
    seconds = time.monotonic() - bar.started
    return {"entries": bar.entries, "pages": bar.pages, "sources": len(sources), "requests": stats.requests,
            "retries": stats.retries, "rate_limited": stats.rate_limited, "seconds": round(seconds, 2),
            "entries_per_s": round(bar.entries / max(seconds, 1e-9), 1), "topic": topic,
            "dry_run": dry_run}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m app backfill", description=__doc__.splitlines()[0])
    parser.add_argument("--campaign", action="append", default=[], help="loyalty campaign id (repeatable)")
    parser.add_argument("--member", action="append", default=[], help="loyalty card code (repeatable)")
    parser.add_argument("--state", type=Path, default=Path("backfill-state.json"),
                        help="where the cursors are kept (default: ./backfill-state.json)")
    parser.add_argument("--resume", action="store_true", help="go on from the cursors in --state")
    parser.add_argument("--dry-run", action="store_true", help="list and count, write nothing to Kafka")
    args = parser.parse_args(argv)
    result = asyncio.run(run(get_settings(), campaigns=args.campaign, members=args.member, state_path=args.state,
                             resume=args.resume, dry_run=args.dry_run))
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
