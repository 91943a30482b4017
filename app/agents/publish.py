"""The agents' one way to write a record, and the guard that keeps a refused record from being committed past.

Records go straight to the producer, without Faust's per-message channel: Faust's `topic.send()` wraps every
record in a FutureMessage, a pending message and a buffer task before it reaches aiokafka (about a sixth of the
worker's time in the profile). At-least-once holds because Faust flushes the producer before it commits offsets.

But a flush does not fail when the broker refused a record (aiokafka's `flush()` waits for failed batches without
raising), and `app.crash()` from a send callback lands after Faust may already have committed the batch: the input
that produced the record would be lost. So any refusal (aiokafka raising in `send`, e.g. a record over
KAFKA_MAX_RECORD_BYTES; a batch failed by the broker, e.g. MESSAGE_TOO_LARGE; the same for Faust's own changelog
writes, seen through its `on_send_error` sensor hook) is recorded here, and from then on the producer's flush
raises: Faust's commit (flush, then commit) never runs again in this process. The worker stops, loudly; a restart
reads the input again from the last commit (every stage is idempotent).
"""
from __future__ import annotations

import asyncio
import logging

import faust

from app.compat import internals, patch
from app.main import app

logger = logging.getLogger(__name__)


class RecordRefused(RuntimeError):
    """The broker (or the producer's own limit) refused a record: offsets must not be committed past it."""


_refused: list[BaseException] = []
FLUSH_DRAIN_S = 60.0


def refused(exc: BaseException) -> None:
    """Record a refused write and stop the worker (once)."""
    if _refused:
        return
    _refused.append(exc)
    logger.error("a record was refused: %r. No offset will be committed from now on; stopping so the input is "
                 "read again from the last commit (check KAFKA_MAX_RECORD_BYTES and the topic's "
                 "max.message.bytes if this is a size error)", exc)
    asyncio.ensure_future(app.crash(RecordRefused(repr(exc))))


def _check(fut: asyncio.Future) -> None:
    if not fut.cancelled() and fut.exception() is not None:
        refused(fut.exception())


async def publish(topic: faust.TopicT | str, key: bytes | None, value: bytes | None, *,
                  timestamp: float | None = None, headers: list[tuple[str, bytes]] | None = None,
                  partition: int | None = None) -> asyncio.Future:
    name = topic if isinstance(topic, str) else topic.get_topic_name()
    fut = await app.producer.send(name, key, value, partition, timestamp, headers)  # guarded below
    fut.add_done_callback(_check)
    return fut


async def store_delivery(topic: str, key: bytes | None, value: bytes, headers: list[tuple[str, bytes]]):
    """The webhook endpoint's write: awaited to the broker's acknowledgement, its failure answered to the caller
    (413, 503), never taken for a lost record of the pipeline's."""
    return await (await _send(topic, key, value, None, None, headers))


class _SendErrors(faust.Sensor):
    """Faust's own writes (table changelogs) report broker refusals only here (and in a log line)."""

    def on_send_error(self, producer, exc: BaseException, state) -> None:
        refused(exc)


def _guarded(producer):
    send, flush = producer.send, producer.flush
    handing_over = internals.count_buffer_handovers(producer)

    async def guarded_send(*args, **kwargs):
        try:
            return await send(*args, **kwargs)
        except Exception as exc:  # refused before sending (too large, buffer full, producer stopped); table
            refused(exc)          # changelog writes come here too (agents/tables.py, or Faust's buffer)
            raise

    async def guarded_flush() -> None:
        # Faust's own changelog writes (TABLE_WRITES=faust) wait in its producer buffer; its flush gives up when
        # the buffer stalls for 0.1 s, and a write taken off the buffer may still be waiting for room in aiokafka's
        # batch (the buffer says 0 then): either way the commit would go ahead of writes not yet sent. Wait until
        # every write is in aiokafka's hands (or refuse to commit), then let aiokafka flush them.
        loop = asyncio.get_running_loop()
        deadline = loop.time() + FLUSH_DRAIN_S
        while (internals.buffered_writes(producer) or handing_over()) and not _refused:
            if loop.time() > deadline:
                raise RecordRefused(f"not committing offsets: changelog writes still unsent after "
                                    f"{FLUSH_DRAIN_S:.0f} s")
            if internals.buffered_writes(producer):
                await internals.flush_buffer(producer)
            else:
                await asyncio.sleep(0.001)  # a write being handed to aiokafka: no event to wait on
        await flush()
        if _refused:  # Faust commits right after this returns: make it not
            raise RecordRefused(f"not committing offsets: a record was refused ({_refused[0]!r})")

    patch(producer, "send", lambda original: guarded_send, "a refused record is recorded (commit guard)")
    patch(producer, "flush", lambda original: guarded_flush, "no commit after a refusal or before every write "
                                                             "is handed to aiokafka (commit guard)")
    return send


app.sensors.add(_SendErrors())
_send = _guarded(app.producer)
