"""The operator commands' one way to write records: every record acknowledged, or an exception.

aiokafka's `flush()` waits for the batches in flight but does not raise when the broker refused one: the send
futures say so. A command that moves a cursor or writes a ledger after its records must not do it on a refusal.
"""
from __future__ import annotations

import asyncio
from collections.abc import Iterable

from aiokafka import AIOKafkaProducer


async def send_all(producer: AIOKafkaProducer, topic: str,
                   records: Iterable[tuple[bytes | None, bytes | None, list[tuple[str, bytes]]]]) -> int:
    """Send (key, value, headers) records and wait until the broker acknowledged every one (raises otherwise)."""
    sent = [await producer.send(topic, value, key=key, headers=headers) for key, value, headers in records]
    await producer.flush()
    await asyncio.gather(*sent)
    return len(sent)
