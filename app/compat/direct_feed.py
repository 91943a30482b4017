"""Hand the stages' source records to their agents in batches, without Faust's per-record stream path.

Stock Faust delivers every fetched record through its Conductor to a topic channel: the record is decoded into an
Event (a schema call, a headers dict), put on the channel's queue, taken off it by the stream's iterator (sensors,
the current-event context variable, the processors) and acknowledged through the stream (sensors, a reference
count, a lock). Our stages take batches and never look at one record alone, so that path was most of what Faust
costs per record (about a fifth of the worker in the profile).

Here the Conductor's handler for a fed topic's partitions (`Conductor._build_handler`, patched on the instance)
appends the record (Faust's `Message`) to that topic's `Feed`, and the agent takes batches from the feed:

- **Flow control** as Faust's channels have it: the handler waits while the app's flow is suspended (a rebalance),
  and the feed is registered with `app.flow_control`, which clears it on a revocation like the channel queues
  (records not taken yet are read again from the committed offset after the rebalance). Nothing is taken while
  the flow is suspended, and a record fetched in an older consumer generation is dropped when a batch is taken,
  as Faust's stream skips both (it also acknowledges them; dropped here, they are simply read again).
- **Acknowledgement** as the stream does it: a record is tracked as unacknowledged when its batch is taken (Faust's
  rebalance and shutdown wait for those, `Consumer.wait_empty`) and acknowledged with `Consumer.ack` only after the
  agent finished the batch, so a commit never covers a record that was not processed.
- **Back-pressure**: at `maxsize` records waiting, the handler waits for room. That holds Faust's whole drain loop
  (every topic) until the agent takes a batch, where a full channel queue made Faust pause fetching that one
  partition; a stage waits for another only for the customers table's lock (agents/customers.py), whose holder
  waits only for the producer, never for the drain loop, so it delays, never deadlocks. A record that waited for room
  across a revocation is dropped (read again after the rebalance). Faust's wait for its own producer buffer to
  ebb is not done: the stages send through the outbox, not that buffer (with `TABLE_WRITES=faust` it is).
- **Stall warning**: Faust's consumer warns about a partition whose stream took nothing for a while
  (`Monitor.stream_inbound_time`); a batch updates it for its partitions.
"""
from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from time import monotonic
from typing import Any

from app.compat import patch


class Feed:
    """The records of one source topic, waiting for its agent."""

    def __init__(self, app: Any, maxsize: int) -> None:
        self.app = app
        self.maxsize = maxsize
        self._records: list[Any] = []
        self._nonempty = asyncio.Event()
        self._room = asyncio.Event()
        self._room.set()
        self._enough = asyncio.Event()  # a whole batch is waiting
        self._batch_max = 1
        self._clears = 0

    async def on_message(self, message: Any) -> None:
        """The Conductor's handler for this topic's partitions: one call per fetched record."""
        flow = self.app.flow_control
        if not flow.is_active():
            await flow.acquire()  # a rebalance: wait, as Faust's channels do
        if len(self._records) >= self.maxsize:
            cleared = self._clears
            while len(self._records) >= self.maxsize:
                await self._room.wait()
            if cleared != self._clears or not flow.is_active():
                # A revocation cleared the feed while this record waited for room: it goes too (Faust's blocked
                # `put` is cancelled there); the consumer reads it again from the committed offset.
                return
        self._records.append(message)
        self._nonempty.set()
        if len(self._records) >= self._batch_max:
            self._enough.set()
        if len(self._records) >= self.maxsize:
            self._room.clear()

    def __len__(self) -> int:
        """Records waiting to be taken."""
        return len(self._records)

    def clear(self) -> None:
        """Drop the records not taken yet (`app.flow_control.clear()`, on a revocation)."""
        self._clears += 1
        self._records.clear()
        self._nonempty.clear()
        self._enough.clear()
        self._room.set()

    async def batches(self, batch_max: int, within_s: float,
                      on_batch: Callable[[int], None] | None = None) -> AsyncIterator[list[Any]]:
        """Batches of records: from the first record, what arrives within `within_s`, at most `batch_max`. Each
        batch is acknowledged when the loop body for it is done; records are Faust `Message`s."""
        self._batch_max = batch_max
        consumer = self.app.consumer
        unacked = consumer._unacked_messages  # what Faust's rebalance and shutdown wait for (Consumer.wait_empty)
        ack = consumer.ack
        inbound = self.app.monitor.stream_inbound_time
        while True:
            if not self._records:
                self._nonempty.clear()
                await self._nonempty.wait()  # idle: no wake-ups until a record arrives
            if len(self._records) < batch_max and within_s > 0:
                try:
                    await asyncio.wait_for(self._enough.wait(), within_s)  # linger for more, unless enough
                except asyncio.TimeoutError:
                    pass
            batch = self._records[:batch_max]
            del self._records[:batch_max]
            self._enough.clear()
            if len(self._records) >= batch_max:
                self._enough.set()
            self._room.set()
            if not self.app.flow_control.is_active():  # a rebalance is on: read again after it, as Faust's
                continue                                 # stream skips what it takes while the flow is suspended
            generation = self.app.consumer_generation_id
            batch = [m for m in batch if m.generation_id == generation]  # fetched before a rebalance: dropped
            if not batch:
                continue
            now = monotonic()
            for message in batch:
                message.tracked = True
                unacked.add(message)
                inbound[message.tp] = now  # read by Faust's stalled-stream warning
            if on_batch is not None:
                on_batch(len(batch))
            yield batch
            for message in batch:
                ack(message)


_feeds: dict[str, Feed] = {}


def feed(app: Any, stream: Any, maxsize: int) -> Feed:
    """The feed of an agent's stream (one topic), created and hooked into the app on first use; the stream's
    channel is subscribed (iterating it registers the topic with the Conductor) but never read."""
    name = stream.channel.get_topic_name() if hasattr(stream.channel, "get_topic_name") else None
    if name is None:
        raise RuntimeError("direct feed: an agent stream over one topic is needed")
    existing = _feeds.get(name)
    if existing is not None:  # a restarted agent: the Conductor's handlers already point at this feed
        return existing
    aiter(stream.channel)  # subscribes the topic (Topic.__aiter__ adds it to app.topics)
    f = _feeds[name] = Feed(app, maxsize)
    app.flow_control.manage_queue(f)
    _install(app.topics)
    return f


def _install(conductor: Any) -> None:
    def make(original):
        def _build_handler(tp, channels):
            f = _feeds.get(tp.topic)
            if f is None:
                return original(tp, channels)
            if len(channels) != 1:  # a second stream on a fed topic would get nothing: refuse loudly
                raise RuntimeError(f"direct feed: topic {tp.topic} has {len(channels)} subscribers, expected one")
            return f.on_message
        return _build_handler

    patch(conductor, "_build_handler", make, "a fed topic's records go to its agent's batches, not through an "
                                             "Event, a channel queue and a stream per record")
