"""Produce and read records with aiokafka, synchronously, waiting on conditions with deadlines."""
from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer


@dataclass(frozen=True)
class Record:
    key: bytes | None
    value: bytes | None
    headers: dict[str, bytes]
    partition: int
    offset: int


Outgoing = tuple[bytes | None, bytes | None, Sequence[tuple[str, bytes]]]


def produce(bootstrap: str, topic: str, records: Sequence[Outgoing], rate: float | None = None,
            linger_ms: float = 5) -> None:
    """Send (key, value, headers) records and wait for every acknowledgement; at `rate` per second if given
    (paced, as the benchmark's latency run offers them), else as fast as possible. `linger_ms` is the producer's
    (5: Apache Kafka 4.0's default)."""
    async def run() -> None:
        producer = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=linger_ms,
                                    max_request_size=8 * 1024 * 1024)
        await producer.start()
        try:
            start, futures = time.monotonic(), []
            for i, (key, value, headers) in enumerate(records):
                if rate is not None and (delay := start + i / rate - time.monotonic()) > 0:
                    await asyncio.sleep(delay)
                futures.append(await producer.send(topic, value, key=key, headers=list(headers)))
            await producer.flush()
            for f in futures:
                await f
        finally:
            await producer.stop()

    asyncio.run(run())


def read_until(
    bootstrap: str,
    topic: str,
    done: Callable[[list[Record]], bool],
    *,
    timeout: float,
    settle: float = 0.0,
) -> list[Record]:
    """Read `topic` from the beginning until `done(records)` holds (then `settle` s more), or the deadline.

    Does not rely on end offsets (the embedded broker misreports them). Returns what was read either way;
    the caller asserts on it.
    """

    async def run() -> list[Record]:
        consumer = AIOKafkaConsumer(
            topic, bootstrap_servers=bootstrap, group_id=None, auto_offset_reset="earliest",
            enable_auto_commit=False, max_partition_fetch_bytes=8 * 1024 * 1024,
        )
        await consumer.start()
        out: list[Record] = []
        deadline = time.monotonic() + timeout
        settled_at: float | None = None
        try:
            while time.monotonic() < deadline:
                batch = await consumer.getmany(timeout_ms=200)
                for msgs in batch.values():
                    out += [
                        Record(m.key, m.value, {k: v for k, v in (m.headers or [])}, m.partition, m.offset)
                        for m in msgs
                    ]
                if settled_at is None and done(out):
                    settled_at = time.monotonic()
                if settled_at is not None and time.monotonic() - settled_at >= settle:
                    break
        finally:
            await consumer.stop()
        return out

    return asyncio.run(run())


def latest_by_key(records: list[Record]) -> dict[bytes, Record]:
    """The compacted view: the last record per key."""
    latest: dict[bytes, Record] = {}
    for r in sorted(records, key=lambda r: (r.partition, r.offset)):
        latest[r.key] = r
    return latest


def create_topic(bootstrap: str, name: str, partitions: int, compacted: bool = False) -> None:
    from aiokafka.admin import AIOKafkaAdminClient, NewTopic

    async def run() -> None:
        admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
        await admin.start()
        try:
            await admin.create_topics([NewTopic(name, partitions, 1, topic_configs={
                "cleanup.policy": "compact" if compacted else "delete"})])
        finally:
            await admin.close()

    asyncio.run(run())


def committed(bootstrap: str, group: str, topic: str, partitions: int) -> dict[int, int | None]:
    """The consumer group's committed offset (the next offset it will read) per partition of `topic`."""
    from aiokafka import TopicPartition

    async def run() -> dict[int, int | None]:
        consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=group, enable_auto_commit=False)
        await consumer.start()
        try:
            return {p: await consumer.committed(TopicPartition(topic, p)) for p in range(partitions)}
        finally:
            await consumer.stop()

    return asyncio.run(run())


def commit_to_end(bootstrap: str, group: str, topic: str) -> dict[int, int]:
    """Commit `group`'s offsets on every partition of `topic` to its end as the broker reports it, as a consumer
    that read it all would. The embedded broker under-reports the end after a batch of several records
    (`app.compat.end_offsets` explains it): exact only for topics written one record per batch."""
    from aiokafka import TopicPartition

    async def run() -> dict[int, int]:
        consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=group, enable_auto_commit=False)
        await consumer.start()
        try:
            await consumer.topics()
            tps = [TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic) or ())]
            consumer.assign(tps)
            ends = await consumer.end_offsets(tps)
            await consumer.commit({tp: end for tp, end in ends.items()})
            return {tp.partition: end for tp, end in ends.items()}
        finally:
            await consumer.stop()

    return asyncio.run(run())


def topic_names(bootstrap: str) -> set[str]:
    async def run() -> set[str]:
        consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
        await consumer.start()
        try:
            return set(await consumer.topics())
        finally:
            await consumer.stop()

    return asyncio.run(run())
