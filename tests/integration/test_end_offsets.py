"""The end-offset correction used before changelog recovery, on a real broker."""
from __future__ import annotations

import asyncio

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from app.compat.end_offsets import true_end_offsets

pytestmark = pytest.mark.integration


async def _produce_one_batch(bootstrap: str, topic: str, n: int) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=50)
    await producer.start()
    try:
        futures = [await producer.send(topic, b"x", partition=0) for _ in range(n)]
        await producer.flush()
        assert (await futures[-1]).offset == n - 1
    finally:
        await producer.stop()


async def _reported_end(bootstrap: str, tp: TopicPartition) -> int:
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=None)
    await consumer.start()
    try:
        return (await consumer.end_offsets([tp]))[tp]
    finally:
        await consumer.stop()


def test_true_end_offsets__finds_the_end_after_a_multi_record_batch(broker, topic_prefix):
    topic = topic_prefix + "end-offsets"
    tp = TopicPartition(topic, 0)

    async def run():
        await _produce_one_batch(broker.bootstrap, topic, 100)
        reported = await _reported_end(broker.bootstrap, tp)
        corrected = await true_end_offsets({"bootstrap_servers": broker.bootstrap}, {tp: reported})
        return reported, corrected[tp]

    reported, corrected = asyncio.run(run())
    if broker.kind == "tansu":
        assert reported < 100  # the embedded broker's known gap is what this guards against
    assert corrected == 100


def test_true_end_offsets__leaves_empty_and_exact_partitions_alone(broker, topic_prefix):
    topic = topic_prefix + "end-offsets-exact"
    tp, empty = TopicPartition(topic, 0), TopicPartition(topic + "-none", 0)

    async def run():
        producer = AIOKafkaProducer(bootstrap_servers=broker.bootstrap, max_batch_size=1)
        await producer.start()
        for _ in range(5):
            await producer.send_and_wait(topic, b"x", partition=0)
        await producer.stop()
        return await true_end_offsets({"bootstrap_servers": broker.bootstrap}, {tp: 5, empty: 0})

    assert asyncio.run(run()) == {tp: 5, empty: 0}
