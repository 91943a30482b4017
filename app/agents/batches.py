"""Taking an agent's input in batches, and grouping a batch by key with the right event current for each group.

Each stage folds a batch per key: one table read and write and one output record per key per batch, instead of
per record. Faust routes a table write (its changelog partition and its RocksDB partition) by the *current
event*, a context variable set while a stream is iterated one event at a time; batches are not taken that way,
so each key's group is processed with an event of its own last record made current (that key's partition).
"""
from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Iterator, Sequence
from typing import Callable, TypeVar

import faust
from faust.types import Message
from pydantic import BaseModel, ValidationError

from app.agents import tables
from app.agents.deadletter import dead_letter
from app.agents.publish import Outbox, stop_on_error
from app.compat import direct_feed, internals
from app.main import app, settings
from app.models import codec
from app.models.records import DeadLetterReason
from app.ops import metrics

T = TypeVar("T")
M = TypeVar("M", bound=BaseModel)


async def take(stream: faust.StreamT, stage: str) -> AsyncIterator[Sequence[Message]]:
    """Batches of this agent's input records (Faust `Message`s): from the first record, what arrives within
    STREAM_BATCH_WITHIN_MS, at most STREAM_BATCH_MAX records. A batch is acknowledged (its offsets become
    committable) only after the agent finished it: an agent failing inside a batch never lets the worker commit
    records it did not process; they are read again (every stage is idempotent).

    With STREAM_FEED=direct (the default) the records come straight from the consumer (app/compat/direct_feed.py),
    without an Event, a channel queue and a stream step per record. STREAM_FEED=faust takes them through the
    agent's Faust stream (`_stream_batches`), as before: kept to measure the difference."""
    if settings.stream_feed == "direct":
        feed = direct_feed.feed(app, stream, maxsize=max(2 * settings.stream_batch_max, 4096))
        async for batch in feed.batches(settings.stream_batch_max, settings.stream_batch_within_ms / 1000.0,
                                        lambda n: metrics.batch(stage, n)):
            yield batch
    else:
        async for batch in _stream_batches(stream, stage):
            yield batch


async def _stream_batches(stream: faust.StreamT, stage: str) -> AsyncIterator[Sequence[Message]]:
    """`take` through the agent's Faust stream. Built like Faust's `Stream.take_events` (a processor fills the
    buffer while the stream drains passively), with two differences. It sleeps until a record arrives instead of
    waking every window: three agents polling every millisecond saturated the worker (latency at 200/s offered,
    p50: 336 ms with a 1 ms window, 72 ms with 10 ms). And a batch is acknowledged only after the agent finished
    it: `take_events` acknowledges in a `finally`."""
    max_ = settings.stream_batch_max
    within = settings.stream_batch_within_ms / 1000.0
    events: list[faust.EventT] = []
    full = asyncio.Event()
    nonempty = asyncio.Event()
    accepting = asyncio.Event()  # cleared while a full batch waits: never more than max_ per batch
    accepting.set()

    async def add_to_buffer(value):
        # Runs in the stream's passive drainer for each record, right after it set `stream.current_event`.
        event = stream.current_event
        if event is None:
            raise RuntimeError("take: no current event")
        if not accepting.is_set():
            await stream.wait(accepting)
        events.append(event)
        nonempty.set()
        if len(events) >= max_:
            full.set()
            accepting.clear()
        return value

    enable_acks = stream.enable_acks
    stream.enable_acks = False  # acknowledged below
    internals.add_passive_processor(stream, add_to_buffer)
    try:
        while not stream.should_stop:
            if not events:
                await stream.wait_for_stopped(nonempty)  # idle: no wake-ups until a record arrives
            if events and len(events) < max_ and within > 0:
                await stream.wait_for_stopped(full, timeout=within)  # linger for more, unless full
            if not events:
                continue
            batch = list(events)
            events.clear()
            full.clear()
            nonempty.clear()
            metrics.batch(stage, len(batch))
            yield [event.message for event in batch]
            for event in batch:
                await stream.ack(event)
            accepting.set()
    finally:
        stream.enable_acks = enable_acks
        internals.remove_processor(stream, add_to_buffer)


@contextlib.asynccontextmanager
async def batch_output(stage: str, batch: Sequence[Message], also: tuple[str, Sequence[Message]] | None = None,
                       ) -> AsyncIterator[tuple[Outbox, tables.TableWrites]]:
    """Around a stage's work on one batch: its outbox and table writes; on the way out the outbox is sent, the
    local tables written, and the stage's latency recorded (and another stage's, `also`: (stage, its records), for
    work of that stage done in this batch, its records' list filled during the batch). An unexpected error stops
    the worker (`stop_on_error`) instead of letting a later commit pass this batch's input."""
    with stop_on_error(stage):
        out = Outbox()
        writes = tables.TableWrites(out)
        yield out, writes
        await out.send()
        writes.done()
        # From each delivery being written to the input topic until this stage finished it (customers: end to end)
        metrics.stage_done(stage, (message.timestamp for message in batch))
        if also is not None and also[1]:
            metrics.stage_done(also[0], (message.timestamp for message in also[1]))


async def loaded(batch: Sequence[Message], model: type[M],
                 key_of: Callable[[M], str]) -> list[tuple[bytes, M, Message]]:
    """Each internal record of the batch as (key, model, message); one that does not validate is dead-lettered."""
    out = []
    for message in batch:
        try:
            value = codec.load(model, message.value)
        except ValidationError as exc:
            await dead_letter(message, DeadLetterReason(code="invalid_internal_record", detail=str(exc)[:300]))
            continue
        out.append((key_of(value).encode(), value, message))
    return out


def at_partition(like: Message, topic: str, partition: int) -> faust.Event:
    """Make current an event of a record like `like` but on `topic`'s `partition`, for table reads and writes of
    that partition (of a table co-partitioned with `topic`). The caller holds the event while it writes (the
    context keeps a weak reference)."""
    message = Message(topic, partition, like.offset, like.timestamp, like.timestamp_type, [], None, None, None,
                      generation_id=like.generation_id)
    current = faust.Event(app, None, None, None, message)
    internals.make_current(current)
    return current


def by_key(items: Sequence[tuple[bytes, T, Message]]) -> Iterator[tuple[bytes, list[tuple[T, Message]]]]:
    """Group (key, value, message) by key, keeping each key's arrival (= offset) order; yields with an event of
    the group's last record made current."""
    groups: dict[bytes, list[tuple[T, Message]]] = {}
    for key, value, message in items:
        groups.setdefault(key, []).append((value, message))
    for key, group in groups.items():
        current = faust.Event(app, None, None, None, group[-1][1])  # held here: the context keeps a weak reference
        internals.make_current(current)
        yield key, group

