"""app/compat/fast_drain.py: Faust's consumer loop delivers each record with `wait_first(callback(message),
suspend_flow.wait())`; the patch runs the callback inline and must keep what `wait_first` promises."""
from __future__ import annotations

import asyncio

import mode
import pytest

from app.compat import fast_drain


class Consumer(mode.Service):
    """The two things the patch reads from Faust's consumer, on a real mode Service (its stock wait_first)."""

    def __post_init__(self) -> None:
        self.suspend_flow = asyncio.Event()


def run(coro):
    return asyncio.new_event_loop().run_until_complete(coro)


def patched() -> Consumer:
    c = Consumer()
    fast_drain.install(c)
    return c


def deliver(c: Consumer, callback):
    """The call Faust's drain loop makes for each record."""
    return c.wait_first(callback(), c.suspend_flow.wait())


def test_a_callback_that_does_not_wait_is_delivered_inline_without_tasks():
    async def main():
        c = patched()
        delivered = []

        async def callback():
            delivered.append(1)
            return "ok"

        tasks_before = len(asyncio.all_tasks())
        res = await deliver(c, callback)
        assert len(asyncio.all_tasks()) == tasks_before
        return res, delivered

    res, delivered = run(main())
    assert delivered == [1] and res.results == ["ok"] and not res.stopped


def test_a_callback_that_waits_finishes_once_it_can():
    async def main():
        c = patched()
        room = asyncio.Queue()

        async def callback():
            await room.get()  # a full stream buffer: waits for room
            await asyncio.sleep(0)
            return "delivered"

        loop = asyncio.get_running_loop()
        loop.call_later(0.05, room.put_nowait, 1)
        return await deliver(c, callback)

    res = run(main())
    assert "delivered" in res.results


def test_a_waiting_callback_is_interrupted_when_the_flow_is_suspended():
    async def main():
        c = patched()
        never = asyncio.Event()

        async def callback():
            await never.wait()

        asyncio.get_running_loop().call_later(0.05, c.suspend_flow.set)
        return await asyncio.wait_for(deliver(c, callback), 5)

    res = run(main())
    assert res.results == [True]  # the suspension won; the record is read again after the rebalance


def test_a_failing_callback_raises_inline_and_after_waiting():
    async def main(wait_first: bool):
        c = patched()

        async def callback():
            if wait_first:
                await asyncio.sleep(0.01)
            raise ValueError("bad record")

        await deliver(c, callback)

    for waits in (False, True):
        with pytest.raises(ValueError, match="bad record"):
            run(main(waits))


def test_other_calls_go_to_the_stock_wait_first():
    async def main():
        c = patched()
        ev = asyncio.Event()
        asyncio.get_running_loop().call_later(0.01, ev.set)
        return await c.wait_first(ev.wait(), timeout=5)

    assert run(main()).results == [True]
