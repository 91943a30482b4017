"""The agents' one way to write a table: the local RocksDB and the changelog record, for one batch.

Faust's `table[key] = value` sends each changelog record through its per-message path (a FutureMessage, its
producer buffer and buffer task, a callback per record that writes the persisted changelog offset into RocksDB:
one extra RocksDB write per record). With TABLE_WRITES=direct (the default) a batch writes the local store and
sends the changelog record straight to the producer, like every other record (`publish`, with its commit guard),
and records the persisted offset once per changelog partition per batch, from the acknowledgement of the last
record sent to it (records of one partition are acknowledged in order, and every one of them was written locally
before it was sent). The changelog records are the same bytes either way: recovery, standbys and the bulk
restore read them as before.
"""
from __future__ import annotations

import asyncio

import faust

from app.agents.publish import publish
from app.compat import internals
from app.main import app, settings

DIRECT = settings.table_writes == "direct"
# With transactions Faust persists changelog offsets only on commit, which `_persisted` does not do.
if DIRECT and app.conf.processing_guarantee is not faust.types.enums.ProcessingGuarantee.AT_LEAST_ONCE:
    raise RuntimeError("TABLE_WRITES=direct needs processing_guarantee=at_least_once")


def get(table: faust.TableT, key: bytes) -> bytes | None:
    """A table value of the current event's partition (the agents' reads; the views read through Faust)."""
    if not DIRECT:
        return table.get(key)
    return internals.store_get(table, internals.current_partition(), key)


class TableWrites:
    """Writes of one batch. Use `put`/`delete` with the key's event current (batches.by_key does that), then
    `done()` once the batch's writes are all sent."""

    def __init__(self) -> None:
        self._last: dict[tuple[faust.TableT, int], asyncio.Future] = {}  # each changelog partition's last send

    async def put(self, table: faust.TableT, key: bytes, value: bytes) -> None:
        if not DIRECT:
            table[key] = value
            return
        partition = internals.current_partition()
        internals.store_put(table, partition, key, value)
        await self._send(table, partition, key, value)

    async def delete(self, table: faust.TableT, key: bytes) -> None:
        """A tombstone, also when the key is already gone locally."""
        if not DIRECT:
            del table[key]
            return
        partition = internals.current_partition()
        internals.store_delete(table, partition, key)
        await self._send(table, partition, key, None)

    async def _send(self, table: faust.TableT, partition: int, key: bytes, value: bytes | None) -> None:
        fut = await publish(table.changelog_topic.get_topic_name(), key, value, partition=partition)
        self._last[(table, partition)] = fut

    def done(self) -> None:
        for (table, partition), fut in self._last.items():
            fut.add_done_callback(lambda f, t=table, p=partition: _persisted(t, p, f))
        self._last.clear()


def _persisted(table: faust.TableT, partition: int, fut: asyncio.Future) -> None:
    if fut.cancelled() or fut.exception() is not None:
        return  # refused: the commit guard stops the worker; the persisted offset stays behind
    internals.set_persisted_offset(table, partition, fut.result().offset)
