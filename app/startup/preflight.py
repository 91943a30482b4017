"""Checks before the worker starts, each ending it with what to do rather than letting it run wrong.

- **An earlier version's unread records.** Versions before cards read the input topic directly re-keyed every
  delivery through `pending-points-events`, and cards read it. This version neither writes nor reads it: records
  still unread there when the old workers stopped would never be folded. So if that topic holds records past the
  consumer group's committed offsets, the worker exits with the count (docs/operations.md, "Upgrading"). Once it
  is drained, the first start deletes it: the group no longer reads it, so Kafka would expire its committed
  offsets (after `offsets.retention.minutes`) and the check would then count the old records as unread.
- **The input topic's partition count.** A delivery keyed by its voucher id is folded on the input partition it
  sits on, which must be its card's table partition: the input topic needs exactly `PARTITIONS` partitions
  (topics created by the service have them; one created by someone else may not).
"""
from __future__ import annotations

import asyncio
import logging
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient

from app.compat import end_offsets

logger = logging.getLogger(__name__)


async def unread(client_kwargs: dict[str, Any], group: str, topic: str, *,
                 verify_end_offsets: bool) -> dict[int, int] | None:
    """Records of `topic` past `group`'s committed offsets, per partition with any; None if there is no such topic."""
    consumer = AIOKafkaConsumer(group_id=group, enable_auto_commit=False, **client_kwargs)
    await consumer.start()
    try:
        if topic not in await consumer.topics():
            return None
        tps = [TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic) or ())]
        ends: dict[Any, int | None] = dict(await consumer.end_offsets(tps))
        if verify_end_offsets:  # the embedded broker under-reports ends after multi-record batches
            ends = await end_offsets.true_end_offsets(client_kwargs, ends)
        starts = await consumer.beginning_offsets(tps)
        out = {}
        for tp in tps:
            read_upto = max(await consumer.committed(tp) or 0, starts.get(tp, 0))  # below the start: expired
            if (left := (ends.get(tp) or 0) - read_upto) > 0:
                out[tp.partition] = left
        return out
    finally:
        await consumer.stop()


async def partitions(client_kwargs: dict[str, Any], topic: str) -> int | None:
    consumer = AIOKafkaConsumer(group_id=None, enable_auto_commit=False, **client_kwargs)
    await consumer.start()
    try:
        return len(consumer.partitions_for_topic(topic) or ()) if topic in await consumer.topics() else None
    finally:
        await consumer.stop()


async def _delete(client_kwargs: dict[str, Any], topic: str) -> None:
    admin = AIOKafkaAdminClient(**client_kwargs)
    await admin.start()
    try:
        await admin.delete_topics([topic])
    finally:
        await admin.close()


def check_drained(client_kwargs: dict[str, Any], group: str, topic: str, *, verify_end_offsets: bool) -> None:
    left = asyncio.run(unread(client_kwargs, group, topic, verify_end_offsets=verify_end_offsets))
    if left:
        raise SystemExit(
            f"{sum(left.values())} records in {topic} (partitions {sorted(left)}) were written by an earlier version "
            f"of this service and not yet read: this version no longer reads that topic. Let the earlier version's "
            f"workers catch up (consumer lag 0 on {topic}), then start this one; see docs/operations.md, "
            f"\"Upgrading\".")
    if left is not None:  # drained: remove it before its committed offsets expire
        try:
            asyncio.run(_delete(client_kwargs, topic))
            logger.info("deleted %s: an earlier version's topic, drained", topic)
        except Exception as exc:
            logger.warning("%s is drained but could not be deleted (%r): delete it, or a start after the group's "
                           "offsets on it expire will refuse to run", topic, exc)


def check_input_partitions(client_kwargs: dict[str, Any], topic: str, expected: int) -> None:
    n = asyncio.run(partitions(client_kwargs, topic))
    if n is not None and n != expected:
        raise SystemExit(
            f"{topic} has {n} partitions and PARTITIONS is {expected}: a delivery is folded on the input partition it "
            f"sits on, which must be its card's. Run with PARTITIONS={n} (a new APP_ID if the tables exist), or "
            f"create the input topic with {expected} partitions; see docs/operations.md, \"Scale out\".")
