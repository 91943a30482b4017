"""Checks before the worker starts, each ending it with what to do rather than letting it run wrong.

- **An earlier version's unread records.** Versions before cards read the input topic directly re-keyed every
  delivery through `pending-points-events`, and cards read it. This version neither writes nor reads it: records
  still unread there when the old workers stopped would never be folded. So if that topic holds records past the
  consumer group's committed offsets, the worker exits with the count (docs/operations.md, "Upgrading"). Once it
  is drained, the first start deletes it: the group no longer reads it, so Kafka would expire its committed
  offsets (after `offsets.retention.minutes`) and the check would then count the old records as unread.
- **The input topic's partition count.** A delivery is folded on the input partition it sits on when that is its
  card's (the partition its voucher id is keyed to), which must be its card's table partition: the input topic
  needs exactly `PARTITIONS` partitions (topics created by the service have them; one created by someone else may
  not). So does `pending-points-card-updates`: a worker folds a summary into the customers table partition its
  customer id is keyed to there, itself when it holds that partition, or through the topic.
"""
from __future__ import annotations

import asyncio
import logging
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient

from app.compat import end_offsets

logger = logging.getLogger(__name__)


async def _unread(consumer: AIOKafkaConsumer, client_kwargs: dict[str, Any], topic: str, *,
                  verify_end_offsets: bool) -> dict[int, int] | None:
    """Records of `topic` past the consumer's group's committed offsets, per partition with any; None if there is
    no such topic (in the consumer's metadata)."""
    if consumer.partitions_for_topic(topic) is None:
        return None
    tps = [TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic) or ())]
    ends = await end_offsets.end_offsets_of(consumer, tps, client_kwargs, verify=verify_end_offsets)
    starts = await consumer.beginning_offsets(tps)
    out = {}
    for tp in tps:
        read_upto = max(await consumer.committed(tp) or 0, starts.get(tp, 0))  # below the start: expired
        if (left := (ends.get(tp) or 0) - read_upto) > 0:
            out[tp.partition] = left
    return out


async def _delete(client_kwargs: dict[str, Any], topic: str) -> None:
    """Delete `topic`; raise if the broker refused (aiokafka returns per-topic errors in the reply, not raised)."""
    admin = AIOKafkaAdminClient(**client_kwargs)
    await admin.start()
    try:
        response = await admin.delete_topics([topic])
    finally:
        await admin.close()
    for error in getattr(response, "topic_error_codes", ()):
        if error[1] not in (0, 3):  # 3: UNKNOWN_TOPIC_OR_PARTITION (another worker deleted it first)
            raise RuntimeError(f"{error[0]}: error_code={error[1]}")


async def _check(client_kwargs: dict[str, Any], group: str, legacy: str, input_topic: str, partitions: int,
                 updates_topic: str, *, verify_end_offsets: bool) -> str | None:
    """What to do, if the worker must not start."""
    consumer = AIOKafkaConsumer(group_id=group, enable_auto_commit=False, **client_kwargs)
    await consumer.start()
    try:
        await consumer.topics()  # one metadata request: every topic's partitions
        left = await _unread(consumer, client_kwargs, legacy, verify_end_offsets=verify_end_offsets)
        n = len(parts) if (parts := consumer.partitions_for_topic(input_topic)) is not None else None
        m = len(parts) if (parts := consumer.partitions_for_topic(updates_topic)) is not None else None
    finally:
        await consumer.stop()
    if left:
        return (
            f"{sum(left.values())} records in {legacy} (partitions {sorted(left)}) were written by an earlier "
            f"version of this service and not yet read: this version no longer reads that topic. Let the earlier "
            f"version's workers catch up (consumer lag 0 on {legacy}), then start this one; see "
            f"docs/operations.md, \"Upgrading\".")
    if n is not None and n != partitions:
        return (
            f"{input_topic} has {n} partitions and PARTITIONS is {partitions}: a delivery is folded on the input "
            f"partition it sits on, which must be its card's. Run with PARTITIONS={n} (a new APP_ID if the tables "
            f"exist), or create the input topic with {partitions} partitions; see docs/operations.md, \"Scale out\".")
    if m is not None and m != partitions:
        return (
            f"{updates_topic} has {m} partitions and PARTITIONS is {partitions}: a card's summary is folded into the "
            f"customers table partition its customer id is keyed to on that topic, which must be the table's. It is "
            f"internal: recreate it with {partitions} partitions together with the state built from it (stop all "
            f"workers; delete it, the changelog topics and the consumer group; start them: docs/operations.md, "
            f"\"Reset state\"), or run under a new APP_ID/TOPIC_PREFIX.")
    if left is not None:  # drained: remove it before its committed offsets expire
        try:
            await _delete(client_kwargs, legacy)
            logger.info("deleted %s: an earlier version's topic, drained", legacy)
        except Exception as exc:
            logger.warning("%s is drained but could not be deleted (%r): delete it, or a start after the group's "
                           "offsets on it expire will refuse to run", legacy, exc)
    return None


def check(client_kwargs: dict[str, Any], group: str, legacy: str, input_topic: str, partitions: int,
          updates_topic: str, *, verify_end_offsets: bool, loop: asyncio.AbstractEventLoop) -> None:
    """Exit with what to do if `legacy` (`pending-points-events`) holds records `group` has not read, or if
    `input_topic` or `updates_topic` does not have `partitions` partitions; delete `legacy` once drained. Runs on
    the worker's loop (app/startup/worker.py says why)."""
    refusal = loop.run_until_complete(_check(client_kwargs, group, legacy, input_topic, partitions, updates_topic,
                                             verify_end_offsets=verify_end_offsets))
    if refusal:
        raise SystemExit(refusal)
