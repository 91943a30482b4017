"""Kafka's record limit in our own settings and code: anything accepted can be stored and dead-lettered."""
from __future__ import annotations

import asyncio

import pytest
from aiokafka.record.default_records import DefaultRecordBatchBuilder
from pydantic import ValidationError

from app.agents.deadletter import fit
from app.settings import Settings


def _size(key, value, headers) -> int:
    """aiokafka's own estimate, the one it checks against max_request_size."""
    return DefaultRecordBatchBuilder.estimate_size_in_bytes(key, value, headers)


def test_settings__the_largest_delivery_accepted_leaves_room_for_headers_under_kafkas_limit():
    s = Settings(_env_file=None)
    assert s.kafka_max_record_bytes == 1024 * 1024  # Apache Kafka's default
    headers = [("event-type", b"voucher.loyalty_card.pending_points.activated"), ("x-h", b"v" * 2000)]
    assert _size(b"v_" + b"x" * 60, b"{" * s.max_delivery_bytes, headers) <= s.kafka_max_record_bytes
    with pytest.raises(ValidationError, match="MAX_DELIVERY_BYTES"):
        Settings(_env_file=None, max_delivery_bytes=1024 * 1024)
    Settings(_env_file=None, kafka_max_record_bytes=4 << 20, max_delivery_bytes=(4 << 20) - 16 * 1024)


def test_dead_letter_copy__fits_under_the_limit_whatever_the_input_and_says_when_it_was_cut():
    limit = 1024 * 1024
    headers = [("dlq-reason", b"too_large: " + b"d" * 1000), ("dlq-code", b"too_large"), ("event-type", b"x" * 300)]
    # an input record that was itself just under the limit (another producer wrote it): the copy is cut
    value, out = fit(b"key", b"v" * (limit - 200), headers, limit)
    assert _size(b"key", value, out) <= limit
    assert dict(out)["dlq-truncated"] == str(limit - 200).encode() and value == b"v" * len(value)
    # anything that fits is copied untouched
    same, out2 = fit(b"key", b"v" * 5000, headers, limit)
    assert same == b"v" * 5000 and out2 == headers
    assert fit(b"key", None, headers, limit) == (None, headers)


class _Buffer:
    """Faust's producer buffer: `flush()` may return with writes still queued (it gives up after a 0.1 s stall)."""

    def __init__(self, size: int):
        self.size = size

    async def _send_pending(self, fut) -> None:  # hands one write to the client
        return None

    async def flush(self) -> None:
        self.size = max(self.size - 1, 0)


class _Producer:
    def __init__(self, buffered: int = 0):
        self.buffer = _Buffer(buffered)
        self.flushed_with_buffer: list[int] = []

    async def send(self, *args, **kwargs):
        fut = asyncio.get_running_loop().create_future()
        fut.set_exception(RuntimeError("MESSAGE_TOO_LARGE"))  # the broker failed the batch after accepting it
        return fut

    async def flush(self) -> None:
        self.flushed_with_buffer.append(self.buffer.size)


@pytest.fixture
def guard(monkeypatch):
    from app.agents import publish

    async def crash(exc):
        return None

    monkeypatch.setattr(publish, "_refused", [])
    monkeypatch.setattr(publish.app, "crash", crash)
    return publish


def test_guard__after_a_record_is_refused_no_flush_lets_a_commit_through(guard):
    producer = _Producer()
    guard._guarded(producer)

    async def scenario():
        await producer.flush()  # nothing refused yet: the commit may go ahead
        fut = await producer.send("t", b"k", b"v", None, None, None)
        fut.add_done_callback(guard._check)
        await asyncio.sleep(0)  # the failure's callback runs
        for _ in range(2):  # every later commit attempt, not only the next
            with pytest.raises(guard.RecordRefused):
                await producer.flush()

    asyncio.run(scenario())


def test_guard__a_stage_failing_on_a_batch_stops_every_later_commit(guard):
    # Faust would restart the agent and go on with later batches; a commit could then pass the failed batch's input.
    producer = _Producer()
    guard._guarded(producer)

    async def scenario():
        await producer.flush()  # nothing failed yet: the commit may go ahead
        with pytest.raises(ValueError):
            with guard.stop_on_error("cards"):
                raise ValueError("a bug in the card fold")
        for _ in range(2):
            with pytest.raises(guard.RecordRefused):
                await producer.flush()

    asyncio.run(scenario())


def test_guard__flush_drains_fausts_buffer_before_the_commit(guard):
    producer = _Producer(buffered=5)
    guard._guarded(producer)
    asyncio.run(producer.flush())
    assert producer.flushed_with_buffer == [0]  # the client's flush ran only once the changelog writes were sent


def test_guard__flush_waits_for_a_write_taken_off_the_buffer_but_not_yet_handed_to_the_client(guard):
    producer = _Producer()
    release, order = asyncio.Event(), []

    async def slow_handover(fut):  # aiokafka's send waiting for room in a batch
        await release.wait()
        order.append("handed over")

    async def client_flush():  # aiokafka's flush: waits only for the batches that exist when it is called
        order.append("client flush")

    producer.buffer._send_pending = slow_handover
    producer.flush = client_flush
    guard._guarded(producer)

    async def scenario():
        handover = asyncio.ensure_future(producer.buffer._send_pending(object()))  # buffer.size is 0 from here
        commit = asyncio.ensure_future(producer.flush())
        for _ in range(20):
            await asyncio.sleep(0)
        assert not commit.done() and order == []  # no commit while a write is still on its way
        release.set()
        await asyncio.wait_for(asyncio.gather(handover, commit), 5)

    asyncio.run(scenario())
    assert order == ["handed over", "client flush"]
