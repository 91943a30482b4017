"""Hand each fetched record to the streams without four tasks per record.

Faust's consumer loop (`Consumer._drain_messages`) delivers every record with
`await self.wait_first(callback(message), self.suspend_flow.wait())`: mode's `wait_first` wraps both coroutines
and the service's stopped/crashed events in four tasks and an `asyncio.wait`, per record. The callback almost
never waits (it puts the event on a stream's queue that has room), so that was about a tenth of the worker's
main thread in the profile, for nothing.

The patched `wait_first` (on the consumer instance, for exactly that call shape) runs the callback's first step
inline: if it finishes without waiting, that is the result, as `wait_first` would have returned it. If it has to
wait (a full queue, flow control during a rebalance, a contended lock), the rest of it continues in the stock
`wait_first`, unchanged: the flow being suspended or the service stopping still interrupts it. Every other call
goes to the stock `wait_first`.
"""
from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import Any

from app.compat import patch

_EVENT_WAIT = asyncio.Event.wait.__qualname__


async def _resume(coro: Coroutine, yielded: Any) -> Any:
    """Drive a coroutine that suspended on `yielded` (a future, or None for a bare yield) as a task would."""
    while True:
        try:
            if yielded is None:
                await asyncio.sleep(0)
            else:
                yielded._asyncio_future_blocking = False  # taken over, as a task does with what it is given
                await yielded
            nxt = coro.send
            arg = None
        except BaseException as exc:  # the future failed, or this task was cancelled: the coroutine sees it
            nxt = coro.throw
            arg = exc
        try:
            yielded = nxt(arg)
        except StopIteration as stop:
            return stop.value


def install(consumer: Any) -> None:
    """Patch this consumer instance's `wait_first` (call before it starts its drain loop)."""
    from mode.services import WaitResults

    def make(original):
        async def wait_first(*coros, timeout=None):
            if (len(coros) != 2 or timeout is not None or consumer.suspend_flow.is_set() or consumer.should_stop
                    or not asyncio.iscoroutine(coros[1]) or coros[1].__qualname__ != _EVENT_WAIT
                    or not asyncio.iscoroutine(coros[0])):
                return await original(*coros, timeout=timeout)
            callback, suspended = coros
            try:
                yielded = callback.send(None)
            except StopIteration as stop:  # delivered without waiting: the common case
                suspended.close()
                return WaitResults([callback], [stop.value], False)
            except BaseException:
                suspended.close()
                raise
            return await original(_resume(callback, yielded), suspended)
        return wait_first

    patch(consumer, "wait_first", make, "a record's delivery to the streams runs inline unless it must wait")
