"""Bulk restore: bring each table's local RocksDB up to its changelog before Faust starts.

Faust restores a table by passing every changelog record through its consumer, conductor and recovery queue, one
event at a time: 5,000-8,000 records/s on our benchmark machine, so a worker starting on an empty disk with a
large changelog is unavailable for minutes. A plain consumer reading the same partitions and writing RocksDB
write batches does the same work several times faster.

`run()` is called by `python -m app worker` before Faust starts (BULK_RESTORE=false turns it off). For every
partition of every table's changelog it opens the partition's RocksDB exactly as Faust's store does (same path,
same options), reads from the offset Faust last persisted there (+1) to the partition's true end (see
app/compat/end_offsets.py), and writes each fetched batch together with Faust's persisted-offset marker in one atomic
write batch. Faust's own recovery then starts from that marker and only reads what was written since.

It restores all partitions, not only the ones this worker will be assigned (the assignment is not known before
the worker joins the group): with more workers than standby replicas + 1 that is extra disk and start time on
each worker, but never wrong, because Faust resumes any partition from its marker.
"""
from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass
from typing import Any

import faust
import rocksdict
from aiokafka import AIOKafkaConsumer, TopicPartition

from app.compat import end_offsets, internals

logger = logging.getLogger(__name__)

_FETCH_RECORDS = 20_000


@dataclass
class Restored:
    records: int = 0
    partitions: int = 0
    seconds: float = 0.0


async def restore(tables: list[faust.TableT], client_kwargs: dict[str, Any], *, verify_end_offsets: bool) -> Restored:
    started = time.monotonic()
    out = Restored()
    consumer = AIOKafkaConsumer(group_id=None, enable_auto_commit=False, fetch_max_wait_ms=20,
                                max_partition_fetch_bytes=16 << 20, **client_kwargs)
    await consumer.start()
    dbs: dict[TopicPartition, rocksdict.Rdict] = {}
    try:
        existing = await consumer.topics()  # metadata for all topics: never auto-creates one
        for table in tables:
            topic = table.changelog_topic.get_topic_name()
            if topic not in existing:
                continue
            for p in sorted(consumer.partitions_for_topic(topic) or ()):
                dbs[TopicPartition(topic, p)] = internals.open_partition_db(table, p)
        out.partitions = len(dbs)
        if dbs:
            out.records = await _restore(consumer, client_kwargs, dbs, verify_end_offsets)
    finally:
        for db in dbs.values():
            db.close()
        await consumer.stop()
    out.seconds = time.monotonic() - started
    return out


def _marker(db: rocksdict.Rdict) -> int | None:
    raw = db.get(internals.OFFSET_KEY)
    return int(raw) if raw is not None else None


async def _restore(consumer: AIOKafkaConsumer, client_kwargs: dict, dbs: dict[TopicPartition, rocksdict.Rdict],
                   verify_end_offsets: bool) -> int:
    # one probe for every partition when verifying (it ends after a short idle round)
    ends = await end_offsets.end_offsets_of(consumer, list(dbs), client_kwargs, verify=verify_end_offsets)
    markers = {tp: _marker(db) for tp, db in dbs.items()}  # last offset applied, or None
    todo: dict[TopicPartition, int] = {}  # partition -> end offset still to reach
    for tp, marker in markers.items():
        end = ends.get(tp)
        if end and (marker if marker is not None else -1) + 1 < end:
            todo[tp] = end
    if not todo:
        return 0
    consumer.assign(list(todo))
    for tp in todo:
        if markers[tp] is None:
            await consumer.seek_to_beginning(tp)
        else:
            consumer.seek(tp, markers[tp] + 1)
    restored = 0
    idle_rounds = 0
    while todo:
        batch = await consumer.getmany(timeout_ms=1000, max_records=_FETCH_RECORDS)
        if not batch:
            idle_rounds += 1
            if idle_rounds >= 10:  # the ends were read from the broker a moment ago: the records must be there
                raise RuntimeError(f"bulk restore: no records for 10 s before the end offsets {todo}")
            continue
        idle_rounds = 0
        for tp, records in batch.items():
            if not records or tp not in todo:
                continue
            wb = rocksdict.WriteBatch(raw_mode=True)
            for r in records:
                if r.value is None:
                    wb.delete(r.key)
                else:
                    wb.put(r.key, r.value)
            last = records[-1].offset
            wb.put(internals.OFFSET_KEY, str(last).encode())  # Faust's marker, atomically with the data
            dbs[tp].write(wb)
            restored += len(records)
            if last + 1 >= todo[tp]:
                del todo[tp]
                consumer.pause(tp)  # the rest (written since) is Faust's to read, from the marker
    return restored


def run(tables: list[faust.TableT], client_kwargs: dict[str, Any], *, verify_end_offsets: bool,
        loop: asyncio.AbstractEventLoop | None = None) -> Restored:
    """Restore (before Faust starts, on the event loop Faust will use: the stores it creates are bound to it)
    and log what was done."""
    if loop is None:
        loop = asyncio.new_event_loop()
        asyncio.set_event_loop(loop)  # the loop Faust's worker picks up
    result = loop.run_until_complete(restore(tables, client_kwargs, verify_end_offsets=verify_end_offsets))
    if result.records:
        logger.info("bulk restore: %d changelog records into %d table partitions in %.3f s (%.0f records/s)",
                    result.records, result.partitions, result.seconds, result.records / max(result.seconds, 1e-6))
    else:
        logger.info("bulk restore: local tables are up to date with their changelogs (%.3f s)", result.seconds)
    return result
