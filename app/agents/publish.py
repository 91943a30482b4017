"""The agents' ways to write records, and the guard that keeps a refused record from being committed past.

Records go straight to the producer, without Faust's per-message channel: Faust's `topic.send()` wraps every
record in a FutureMessage, a pending message and a buffer task before it reaches aiokafka (about a sixth of the
worker's time in the profile). The stages put a batch's records (outputs and table changelogs) in an `Outbox`,
sent as one producer batch per partition; `publish` sends one record (dead letters). At-least-once holds because
Faust flushes the producer before it commits offsets.

But a flush does not fail when the broker refused a record (aiokafka's `flush()` waits for failed batches without
raising), and `app.crash()` from a send callback lands after Faust may already have committed the batch: the input
that produced the record would be lost. So any refusal (aiokafka raising in `send`, e.g. a record over
KAFKA_MAX_RECORD_BYTES, or the outbox refusing one; a batch failed by the broker, e.g. MESSAGE_TOO_LARGE; the
same for Faust's own changelog writes, seen through its `on_send_error` sensor hook) is recorded here, and from
then on the producer's flush raises: Faust's commit (flush, then commit) never runs again in this process. The
worker stops, loudly; a restart reads the input again from the last commit (every stage is idempotent).
"""
from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
from collections.abc import Iterator
from typing import Any

import faust
from aiokafka.errors import MessageSizeTooLargeError

from app.compat import internals, patch
from app.main import app, settings

logger = logging.getLogger(__name__)


class RecordRefused(RuntimeError):
    """The broker (or the producer's own limit) refused a record: offsets must not be committed past it."""


_refused: list[BaseException] = []
FLUSH_DRAIN_S = 60.0


def refused(exc: BaseException, what: str = "a record was refused") -> None:
    """Record a refused write (or a failed batch) and stop the worker (once)."""
    if _refused:
        return
    _refused.append(exc)
    logger.error("%s: %r. No offset will be committed from now on; stopping so the input is read again from the "
                 "last commit (check KAFKA_MAX_RECORD_BYTES and the topic's max.message.bytes if this is a size "
                 "error)", what, exc)
    asyncio.ensure_future(app.crash(RecordRefused(repr(exc))))


@contextlib.contextmanager
def stop_on_error(stage: str) -> Iterator[None]:
    """Around a stage's batch: an unexpected error stops the worker like a refused record. Faust would restart the
    agent and carry on with later batches, and a commit could then pass the failed batch's input, which was never
    processed. Stopped instead, the worker reads it again from the last commit after a restart."""
    try:
        yield
    except Exception as exc:
        refused(exc, f"the {stage} stage failed on a batch")
        raise


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


class Outbox:
    """The records of one agent batch, sent together when the batch is done: one producer batch per topic partition
    (aiokafka's `create_batch` / `send_batch`) instead of one `send` per record. A `send` costs a future, a
    partitioner call, a trip through the accumulator and a callback per record (about a sixth of the worker's time
    in the profile); appending to a batch costs half a microsecond.

    The guarantees are `publish`'s: a record over KAFKA_MAX_RECORD_BYTES or a batch the broker refuses is recorded
    by the commit guard (`refused`), and Faust's flush before a commit waits for every batch submitted. Records
    still in an outbox are not covered by a commit: their input is acknowledged only after `send()` (batches.take).
    Partitions are Kafka's default for the key (app/partitioner.py), as `send` would pick; records of one partition
    keep the order they were added in.
    """

    __slots__ = ("_producer", "_open", "_sent", "_partitions")

    def __init__(self, producer: Any = None) -> None:
        self._producer = producer if producer is not None else internals.kafka_producer(app)
        self._open: dict[tuple[str, int], list] = {}  # (topic, partition) -> [batch builder, records in it]
        self._sent: dict[tuple[str, int], tuple[asyncio.Future, int]] = {}  # last batch submitted, its records
        self._partitions: dict[str, range] = {}  # each topic's partitions, read once per batch

    async def add(self, topic: faust.TopicT | str, key: bytes | None, value: bytes | None, *,
                  timestamp: float | None = None, headers: list[tuple[str, bytes]] | None = None,
                  partition: int | None = None) -> None:
        name = topic if isinstance(topic, str) else _name_of(topic)
        headers = headers or []
        # The exact estimate only when the record could be near the limit (a record's framing is under 100 bytes)
        if ((len(key) if key else 0) + (len(value) if value else 0) + _HEADROOM > _MAX_RECORD
                or headers) and (size := internals.record_size(key, value, headers)) > _MAX_RECORD:
            # what aiokafka's send checks; the broker would refuse it
            exc = MessageSizeTooLargeError(f"The message is {size} bytes when serialized which is larger than "
                                           f"KAFKA_MAX_RECORD_BYTES ({_MAX_RECORD}), topic {name}")
            refused(exc)
            raise exc
        if partition is None:
            partitions = self._partitions.get(name)
            if partitions is None:
                n = internals.partition_count(self._producer, name)
                if n is None:  # first record for this topic: fetch its metadata, as aiokafka's send does
                    try:
                        await internals.wait_on_metadata(self._producer, name)
                    except Exception as exc:  # aiokafka's send would fail the same way: the commit guard stops
                        refused(exc)           # the worker
                        raise
                    n = internals.partition_count(self._producer, name)
                partitions = self._partitions[name] = range(n)  # for this batch
            partition = _partitioner(key, partitions, partitions)
        tp = (name, partition)
        ts = int(timestamp * 1000) if timestamp is not None else None
        entry = self._open.get(tp)
        if entry is None:
            entry = self._open[tp] = [self._producer.create_batch(), 0]
        if entry[0].append(timestamp=ts, key=key, value=value, headers=headers) is None:  # full
            await self._submit(tp, entry)
            entry = self._open[tp] = [self._producer.create_batch(), 0]
            entry[0].append(timestamp=ts, key=key, value=value, headers=headers)  # an empty batch takes any record
        entry[1] += 1

    async def send(self) -> None:
        """Submit every open batch to the producer (it sends them as soon as it can)."""
        for tp, entry in self._open.items():
            await self._submit(tp, entry)
        self._open.clear()

    def last_sent(self, topic: str, partition: int) -> tuple[asyncio.Future, int] | None:
        """The last batch submitted to a partition, and how many records it holds (its result's offset is the
        first record's)."""
        return self._sent.get((topic, partition))

    async def _submit(self, tp: tuple[str, int], entry: list) -> None:
        builder, count = entry
        builder.close()
        try:
            fut = await self._producer.send_batch(builder, tp[0], partition=tp[1])
        except Exception as exc:  # producer stopped, queue full past the request timeout
            refused(exc)
            raise
        fut.add_done_callback(_check)
        self._sent[tp] = (fut, count)


_partitioner = app.conf.producer_partitioner  # the producer's own (app/main.py)
_MAX_RECORD = settings.kafka_max_record_bytes
_HEADROOM = 1024  # more than a record's framing and batch header in aiokafka's estimate


@functools.lru_cache(maxsize=None)  # a handful of topics; get_topic_name() checks patterns on every call
def _name_of(topic: faust.TopicT) -> str:
    return topic.get_topic_name()


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
