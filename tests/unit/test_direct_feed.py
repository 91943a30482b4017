"""app/compat/direct_feed.py: the stages' records straight from the consumer, in batches. What Faust's channel and
stream promised must still hold: batches by window and size, acknowledged only after the agent finished them,
tracked for the rebalance's wait, dropped on a revocation or from an older consumer generation, and the consumer
held back by a suspended flow or a full feed."""
from __future__ import annotations

import asyncio
from types import SimpleNamespace

from mode.utils.queues import FlowControlEvent

from app.compat.direct_feed import Feed


class Consumer:
    def __init__(self) -> None:
        self._unacked_messages: set = set()
        self.acked: list[int] = []

    def ack(self, message) -> None:
        self._unacked_messages.discard(message)
        self.acked.append(message.offset)


class App:
    def __init__(self) -> None:
        self.flow_control = FlowControlEvent(initially_suspended=False)
        self.consumer = Consumer()
        self.monitor = SimpleNamespace(stream_inbound_time={})
        self.consumer_generation_id = 1


class Message:  # the part of Faust's Message the feed uses (hashable, like Faust's)
    def __init__(self, offset: int, generation_id: int = 1, partition: int = 0) -> None:
        self.offset = offset
        self.generation_id = generation_id
        self.tp = ("t", partition)
        self.tracked = False


def run(coro):
    return asyncio.new_event_loop().run_until_complete(asyncio.wait_for(coro, 10))


def setup(maxsize: int = 100) -> tuple[App, Feed]:
    app = App()
    feed = Feed(app, maxsize)
    app.flow_control.manage_queue(feed)
    return app, feed


async def first_batch(feed: Feed, within_s: float = 0.001) -> list:
    """The first batch the agent would take."""
    it = feed.batches(batch_max=10, within_s=within_s)
    batch = await it.__anext__()
    await it.aclose()
    return batch


def test_records_come_in_batches_of_at_most_the_max_and_are_acknowledged_only_after_the_agent_finished_them():
    async def main():
        app, feed = setup()
        for i in range(5):
            await feed.on_message(Message(i))
        batches, acked_during = [], []
        it = feed.batches(batch_max=3, within_s=0.01)
        async for batch in it:
            batches.append([m.offset for m in batch])
            acked_during.append(list(app.consumer.acked))
            # while the agent holds a batch, its records are what a rebalance waits for (Consumer.wait_empty)
            assert all(m in app.consumer._unacked_messages and m.tracked for m in batch)
            if len(batches) == 2:
                break
        await it.aclose()
        return batches, acked_during, app

    batches, acked_during, app = run(main())
    assert batches == [[0, 1, 2], [3, 4]]
    assert acked_during == [[], [0, 1, 2]]  # the first batch was acknowledged only once the agent asked for more
    assert app.monitor.stream_inbound_time[("t", 0)] > 0  # what Faust's stalled-stream warning reads


def test_a_batch_waits_for_the_window_to_collect_records_that_arrive_after_the_first():
    async def main():
        app, feed = setup()

        async def late():
            await feed.on_message(Message(0))
            await asyncio.sleep(0.01)
            await feed.on_message(Message(1))

        producer = asyncio.ensure_future(late())
        batch = await first_batch(feed, within_s=0.5)
        await producer
        return [m.offset for m in batch]

    assert run(main()) == [0, 1]


def test_a_revocation_drops_the_records_not_taken_yet_without_acknowledging_them():
    async def main():
        app, feed = setup()
        for i in range(3):
            await feed.on_message(Message(i))
        app.flow_control.clear()  # Faust's revocation clears every queue registered with its flow control
        await feed.on_message(Message(10))  # read again from the committed offset after the rebalance
        return [m.offset for m in await first_batch(feed)], app.consumer.acked

    offsets, acked = run(main())
    assert offsets == [10] and acked == []


def test_records_fetched_in_an_older_consumer_generation_are_dropped_untracked():
    async def main():
        app, feed = setup()
        stale = Message(0, generation_id=1)
        await feed.on_message(stale)
        app.consumer_generation_id = 2  # a rebalance happened since the fetch
        await feed.on_message(Message(0, generation_id=2))
        return await first_batch(feed), stale, app

    batch, stale, app = run(main())
    assert [m.generation_id for m in batch] == [2]
    assert not stale.tracked and stale not in app.consumer._unacked_messages


def test_the_consumer_waits_while_the_flow_is_suspended_and_while_the_feed_is_full():
    async def main():
        app, feed = setup(maxsize=2)
        app.flow_control.suspend()
        first = asyncio.ensure_future(feed.on_message(Message(0)))
        await asyncio.sleep(0.01)
        suspended_waits = not first.done()
        app.flow_control.resume()
        await first
        await feed.on_message(Message(1))
        third = asyncio.ensure_future(feed.on_message(Message(2)))  # the feed holds 2: no room
        await asyncio.sleep(0.01)
        full_waits = not third.done()
        it = feed.batches(batch_max=2, within_s=0.001)
        batch = await it.__anext__()  # taking a batch makes room
        await asyncio.wait_for(third, 1)
        nxt = await it.__anext__()
        await it.aclose()
        return suspended_waits, full_waits, [m.offset for m in batch], [m.offset for m in nxt]

    suspended_waits, full_waits, batch, nxt = run(main())
    assert suspended_waits and full_waits
    assert batch == [0, 1] and nxt == [2]


def test_a_record_waiting_for_room_when_a_revocation_clears_the_feed_is_dropped_not_taken_after_it():
    async def main():
        app, feed = setup(maxsize=2)
        await feed.on_message(Message(0))
        await feed.on_message(Message(1))
        waiting = asyncio.ensure_future(feed.on_message(Message(2)))  # full: waits for room
        await asyncio.sleep(0.01)
        app.flow_control.suspend()  # Faust's revocation: suspend, then clear, with no wait in between
        app.flow_control.clear()
        await asyncio.wait_for(waiting, 1)  # the room it waited for came from the clear
        assert len(feed) == 0  # not appended to the cleared feed
        app.flow_control.resume()
        await feed.on_message(Message(20))  # the first record read after the rebalance
        return [m.offset for m in await first_batch(feed)], app.consumer.acked

    offsets, acked = run(main())
    assert offsets == [20] and acked == []


async def until(condition, deadline_s: float = 2.0) -> None:
    loop = asyncio.get_running_loop()
    end = loop.time() + deadline_s
    while not condition():
        assert loop.time() < end, "condition not reached before the deadline"
        await asyncio.sleep(0.001)


def test_nothing_is_taken_for_the_agent_while_the_flow_is_suspended():
    async def main():
        app, feed = setup()
        await feed.on_message(Message(0))
        await feed.on_message(Message(1))
        app.flow_control.suspend()  # a rebalance started: what was fetched before is read again after it
        it = feed.batches(batch_max=10, within_s=0.001)
        first = asyncio.ensure_future(it.__anext__())
        await until(lambda: len(feed) == 0)  # taken off the feed, and dropped
        app.flow_control.resume()
        await feed.on_message(Message(20))
        batch = await asyncio.wait_for(first, 1)
        await it.aclose()
        return [m.offset for m in batch], app.consumer.acked

    offsets, acked = run(main())
    assert offsets == [20] and acked == []
