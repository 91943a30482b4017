"""Before the worker starts: refuse to run over records an earlier version left in `pending-points-events`.

Versions before cards read the input topic directly re-keyed every delivery through `pending-points-events`, and
cards read it. This version neither writes nor reads it: records still unread there when the old workers stopped
would never be folded. So if that topic holds records past the consumer group's committed offsets, the worker
exits with the command that drains them (docs/operations.md, "Upgrading"). A fresh deployment has no such topic.
"""
from __future__ import annotations

import asyncio
import logging
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition

from app.compat import end_offsets

logger = logging.getLogger(__name__)


async def unread(client_kwargs: dict[str, Any], group: str, topic: str, *, verify_end_offsets: bool) -> dict[int, int]:
    """Records of `topic` past `group`'s committed offsets, per partition (empty: none, or no such topic)."""
    consumer = AIOKafkaConsumer(group_id=group, enable_auto_commit=False, **client_kwargs)
    await consumer.start()
    try:
        if topic not in await consumer.topics():
            return {}
        tps = [TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic) or ())]
        ends: dict[Any, int | None] = dict(await consumer.end_offsets(tps))
        if verify_end_offsets:  # the embedded broker under-reports ends after multi-record batches
            ends = await end_offsets.true_end_offsets(client_kwargs, ends)
        starts = await consumer.beginning_offsets(tps)
        out = {}
        for tp in tps:
            read_upto = await consumer.committed(tp)
            left = (ends.get(tp) or 0) - (starts.get(tp, 0) if read_upto is None else read_upto)
            if left > 0:
                out[tp.partition] = left
        return out
    finally:
        await consumer.stop()


def check(client_kwargs: dict[str, Any], group: str, topic: str, *, verify_end_offsets: bool) -> None:
    left = asyncio.run(unread(client_kwargs, group, topic, verify_end_offsets=verify_end_offsets))
    if left:
        raise SystemExit(
            f"{sum(left.values())} records in {topic} (partitions {sorted(left)}) were written by an earlier version "
            f"of this service and not yet read: this version no longer reads that topic. Let the earlier version's "
            f"workers catch up (consumer lag 0 on {topic}), then start this one; see docs/operations.md, "
            f"\"Upgrading\".")
