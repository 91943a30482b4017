"""True end offsets for changelog recovery, whatever the broker reports.

The embedded broker (Tansu 0.6) answers ListOffsets(latest) with the base offset of the last record batch + 1,
not the last offset + 1. Faust's recovery reads a changelog partition up to that reported end, so after
multi-record batches a restored table silently misses the tail of each partition.

Faust asks for end offsets in exactly one place, `AIOKafkaConsumerThread._highwaters` (used for active and standby
recovery). `install()` wraps it: after the broker's answer, it reads each non-empty partition from the reported end
- 1 onwards with a short-lived consumer and returns max(reported, last offset seen + 1). On a correct broker this
reads one record per partition and changes nothing; it never lowers what the broker reported.
"""
from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition

from app.compat import patch

logger = logging.getLogger(__name__)

_PROBE_IDLE_MS = 150  # no records for this long (several fetch rounds of _PROBE_FETCH_WAIT_MS) ends the probe
_PROBE_FETCH_WAIT_MS = 20  # the embedded broker holds an empty fetch for the whole wait


async def end_offsets_of(consumer: Any, tps: list, client_kwargs: dict[str, Any], *,
                         verify: bool) -> dict[Any, int | None]:
    """`consumer`'s end offsets for `tps`, corrected for the embedded broker's under-reporting when `verify`
    (KAFKA_VERIFY_END_OFFSETS)."""
    ends: dict[Any, int | None] = dict(await consumer.end_offsets(tps))
    return await true_end_offsets(client_kwargs, ends) if verify else ends


async def true_end_offsets(client_kwargs: dict[str, Any], reported: Mapping[Any, int | None]) -> dict[Any, int | None]:
    """Return end offsets at least as large as `reported`, corrected by reading past each reported end."""
    probe = {tp: end for tp, end in reported.items() if end}  # None/0: empty partition, nothing to correct
    if not probe:
        return dict(reported)
    consumer = AIOKafkaConsumer(group_id=None, enable_auto_commit=False, fetch_max_wait_ms=_PROBE_FETCH_WAIT_MS,
                                **client_kwargs)
    await consumer.start()
    try:
        tps = {TopicPartition(tp.topic, tp.partition): tp for tp in probe}
        consumer.assign(list(tps))
        last_seen: dict[TopicPartition, int] = {}
        for ktp, tp in tps.items():
            consumer.seek(ktp, probe[tp] - 1)
        while True:
            batch = await consumer.getmany(timeout_ms=_PROBE_IDLE_MS)
            if not batch:
                break
            for ktp, records in batch.items():
                if records:
                    last_seen[ktp] = max(last_seen.get(ktp, -1), records[-1].offset)
    finally:
        await consumer.stop()
    corrected = dict(reported)
    for ktp, tp in tps.items():
        true_end = last_seen.get(ktp, -1) + 1
        if true_end > probe[tp]:
            logger.warning(
                "broker reported end offset %d for %s[%d] but records go to %d: recovering to the true end",
                probe[tp], tp.topic, tp.partition, true_end - 1,
            )
            corrected[tp] = true_end
    return corrected


def install(client_kwargs: Callable[[], dict[str, Any]]) -> None:
    """Make Faust's recovery highwaters exact (idempotent)."""
    from faust.transport.drivers import aiokafka as driver

    def make(original):
        async def _highwaters(self, partitions):
            reported = await original(self, partitions)
            if self.consumer.in_transaction:
                return reported
            return await true_end_offsets(client_kwargs(), reported)
        return _highwaters

    patch(driver.AIOKafkaConsumerThread, "_highwaters", make, "recovery reads changelogs to their true end")
