"""Re-drive dead letters: put them back on `voucherify-webhooks`, once, after the fix that makes them valid.

    python -m app redrive [--code CODE ...] [--since ISO] [--until ISO]
                          [--partition P] [--from-offset N] [--to-offset M] [--dry-run]

Reads `voucherify-webhooks-dlq` from the start to its end at the time of the call, keeps the records that match
every filter given (`dlq-code` header; record time; partition and offsets) and that the ledger topic
`voucherify-webhooks-redriven` does not list yet, and writes each one's original key, value and headers (its
`dlq-*` headers dropped, `redriven-from: <topic>/<partition>/<offset>` added) back onto the input topic. Once
they are flushed, one ledger record per dead letter (compacted, keyed by its coordinates) marks it re-driven, so
a second run sends nothing twice. A crash between the two re-sends those records once more, which the processor
absorbs (every stage is idempotent). A delivery that is still invalid is dead-lettered again, as a new record
that keeps its `redriven-from` header: later runs leave those alone (`failed_again` in the summary) unless
--include-redriven says otherwise, so a delivery the fix did not cover does not go round in circles. Dead letters
of internal topics (`dlq-source-topic` not the input) and copies cut to fit the record limit (`dlq-truncated`)
are not deliveries to put back: counted, skipped.
"""
from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import sys
from collections import Counter

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

import topics
from app.cli.kafka_io import send_all
from app.compat import end_offsets
from app.settings import Settings, get_settings



async def _read_all(settings: Settings, topic: str, keep=lambda record: True) -> list:
    """The records of `topic` that `keep` accepts, up to its end offsets at the time of the call (empty if the topic
    does not exist); the others are dropped as they are read, so a large topic is never held in memory."""
    consumer = AIOKafkaConsumer(**settings.kafka_client_kwargs(), group_id=None, enable_auto_commit=False,
                                auto_offset_reset="earliest", fetch_max_wait_ms=50)
    await consumer.start()
    try:
        partitions = consumer.partitions_for_topic(topic) if topic in await consumer.topics() else None
        if not partitions:
            return []
        tps = [TopicPartition(topic, p) for p in sorted(partitions)]
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        ends = await end_offsets.end_offsets_of(consumer, tps, settings.kafka_client_kwargs(),
                                                verify=settings.kafka_verify_end_offsets)
        pending = {tp for tp in tps if ends[tp] > 0}
        out = []
        while pending:
            batch = await consumer.getmany(*pending, timeout_ms=1000)
            for tp, records in batch.items():
                out += [r for r in records if r.offset < ends[tp] and keep(r)]
                if records and records[-1].offset >= ends[tp] - 1:
                    pending.discard(tp)
            for tp in list(pending):  # an end past the last record (a transaction marker, compaction)
                if await consumer.position(tp) >= ends[tp]:
                    pending.discard(tp)
        return out
    finally:
        await consumer.stop()


def _matches(record, headers: dict[str, bytes], args) -> bool:
    code = (headers.get(topics.DLQ_CODE) or b"").decode(errors="replace")
    if args.code and code not in args.code:
        return False
    when = dt.datetime.fromtimestamp(record.timestamp / 1000, dt.timezone.utc)
    if args.since and when < args.since or args.until and when >= args.until:
        return False
    if args.partition is not None and record.partition != args.partition:
        return False
    if args.from_offset is not None and record.offset < args.from_offset:
        return False
    return args.to_offset is None or record.offset <= args.to_offset


async def run(settings: Settings, args) -> dict:
    dlq = settings.topic_name(topics.DEAD_LETTERS.name)
    ledger = settings.topic_name(topics.REDRIVEN.name)
    target = settings.topic_name(topics.WEBHOOKS.name)
    done = {r.key for r in await _read_all(settings, ledger) if r.value is not None}
    chosen: list = []  # (coordinates, record, headers)
    counts = Counter()

    def keep(record) -> bool:  # decided while reading: only the dead letters to send are kept
        headers = dict(record.headers or ())
        if not _matches(record, headers, args):
            return False
        coordinates = f"{dlq}/{record.partition}/{record.offset}".encode()
        if coordinates in done:
            counts["already_redriven"] += 1
        elif headers.get(topics.DLQ_SOURCE_TOPIC, target.encode()) != target.encode():
            counts["not_deliveries"] += 1  # dead-lettered from an internal topic: nothing to put back
        elif topics.DLQ_TRUNCATED in headers and not args.include_truncated:
            counts["truncated"] += 1  # only the first bytes were kept: re-driving would send another delivery
        elif topics.REDRIVEN_FROM in headers and not args.include_redriven:
            counts["failed_again"] += 1  # a re-driven delivery dead-lettered again: the fix did not cover it
        else:
            chosen.append((coordinates, record, headers))
        return False

    await _read_all(settings, dlq, keep)
    by_code = Counter(h.get(topics.DLQ_CODE, b"?").decode(errors="replace") for _, _, h in chosen)
    if chosen and not args.dry_run:
        producer = AIOKafkaProducer(**settings.kafka_client_kwargs(), acks="all",
                                    max_request_size=settings.kafka_max_record_bytes)
        await producer.start()
        try:  # every delivery acknowledged on the input topic before any is marked done
            await send_all(producer, target, [
                (r.key, r.value, [(k, v) for k, v in h.items() if not k.startswith("dlq-") and k != topics.REDRIVEN_FROM]
                 + [(topics.REDRIVEN_FROM, c)]) for c, r, h in chosen])
            now = json.dumps({"to": target, "at": dt.datetime.now(dt.timezone.utc).isoformat()}).encode()
            await send_all(producer, ledger, [(c, now, []) for c, _, _ in chosen])
        finally:
            await producer.stop()
    return {"redriven": 0 if args.dry_run else len(chosen), "would_redrive": len(chosen) if args.dry_run else 0,
            "already_redriven": counts["already_redriven"], "failed_again": counts["failed_again"],
            "truncated": counts["truncated"], "not_deliveries": counts["not_deliveries"], "by_code": dict(by_code),
            "to": target, "dry_run": args.dry_run}


def _time(value: str) -> dt.datetime:
    t = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
    return t if t.tzinfo else t.replace(tzinfo=dt.timezone.utc)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m app redrive", description=__doc__.splitlines()[0])
    parser.add_argument("--code", action="append", default=[], help="dlq-code to re-drive (repeatable; default all)")
    parser.add_argument("--since", type=_time, help="dead-lettered at or after (ISO 8601, UTC if no offset)")
    parser.add_argument("--until", type=_time, help="dead-lettered before")
    parser.add_argument("--partition", type=int)
    parser.add_argument("--from-offset", type=int)
    parser.add_argument("--to-offset", type=int)
    parser.add_argument("--dry-run", action="store_true", help="show what would go, send nothing")
    parser.add_argument("--include-truncated", action="store_true",
                        help="also re-drive dead letters whose copy was cut to fit (dlq-truncated): not advised")
    parser.add_argument("--include-redriven", action="store_true",
                        help="also re-drive dead letters of deliveries that were re-driven before (and failed again)")
    args = parser.parse_args(argv)
    result = asyncio.run(run(get_settings(), args))
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
