"""The agents' outbox (agents/publish.py) on a real broker: one producer batch per partition, records where and in
the order a per-record `send` would have put them, and the last batch's acknowledgement locating its last record
(the persisted changelog offset is derived from it)."""
from __future__ import annotations

import asyncio
import contextlib

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.partitioner import DefaultPartitioner

from app.agents.publish import Outbox
from app.partitioner import CachedPartitioner

pytestmark = pytest.mark.integration

PARTITIONS = 4


async def _create(bootstrap: str, topic: str) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(topic, PARTITIONS, 1)])
    finally:
        await admin.close()


@contextlib.asynccontextmanager
async def _outbox(bootstrap: str, topic: str):
    """An outbox over a producer of its own, on a new topic of PARTITIONS partitions; flushed at the end."""
    await _create(bootstrap, topic)
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, partitioner=CachedPartitioner())
    await producer.start()
    try:
        yield Outbox(producer)
        await producer.flush()
    finally:
        await producer.stop()


async def _read(bootstrap: str, topic: str, expected: int) -> dict[int, list]:
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=None, auto_offset_reset="earliest")
    await consumer.start()
    try:
        tps = [TopicPartition(topic, p) for p in range(PARTITIONS)]
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        out: dict[int, list] = {p: [] for p in range(PARTITIONS)}
        deadline = asyncio.get_running_loop().time() + 30
        while sum(map(len, out.values())) < expected:
            assert asyncio.get_running_loop().time() < deadline, f"read {out} of {expected}"
            for tp, msgs in (await consumer.getmany(timeout_ms=500)).items():
                out[tp.partition] += msgs
        return out
    finally:
        await consumer.stop()


def test_outbox__records_land_on_kafkas_default_partition_in_the_order_added(broker, topic_prefix):
    topic = topic_prefix + "outbox-keys"
    keys = [f"cust_{i % 7}".encode() for i in range(60)]  # repeated keys: per-key order must hold

    async def run():
        async with _outbox(broker.bootstrap, topic) as out:
            for i, key in enumerate(keys):
                await out.add(topic, key, b"%d" % i, timestamp=1_700_000_000.5 + i,
                              headers=[("n", b"%d" % i)])
            await out.send()
        return await _read(broker.bootstrap, topic, len(keys))

    got = asyncio.run(run())
    parts = list(range(PARTITIONS))
    for p, msgs in got.items():
        values = [int(m.value) for m in msgs]
        assert values == sorted(values)  # the order added
        for m in msgs:
            i = int(m.value)
            assert m.key == keys[i] and DefaultPartitioner()(m.key, parts, parts) == p
            assert m.timestamp == 1_700_000_000_500 + i * 1000 and dict(m.headers) == {"n": b"%d" % i}


def test_outbox__a_partition_past_one_batch_keeps_order_and_its_last_ack_locates_its_last_record(broker,
                                                                                             topic_prefix):
    topic = topic_prefix + "outbox-split"
    n, big = 120, 70_000  # 120 x 1 KB records: several 16 KB producer batches; one record larger than a batch

    async def run():
        async with _outbox(broker.bootstrap, topic) as out:
            for i in range(n):
                value = b"%05d" % i + (b"x" * (big if i == 60 else 1000))
                await out.add(topic, b"k", value, partition=2)
            await out.send()
            fut, count = out.last_sent(topic, 2)
            last = (await fut).offset + count - 1
        return last, await _read(broker.bootstrap, topic, n)

    last, got = asyncio.run(run())
    msgs = got[2]
    assert [int(m.value[:5]) for m in msgs] == list(range(n))
    assert len(msgs[60].value) == 5 + big
    assert last == msgs[-1].offset
