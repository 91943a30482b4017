"""The agents' one way to write a table: the local RocksDB and the changelog record, for one batch.

Faust's `table[key] = value` sends each changelog record through its per-message path (a FutureMessage, its
producer buffer and buffer task, a callback per record that writes the persisted changelog offset into RocksDB:
one extra RocksDB write per record). With TABLE_WRITES=direct (the default) a batch puts each changelog record in
the batch's outbox with its other records (agents/publish.py: one producer batch per partition, the commit
guard), writes the local store once per table partition after the outbox was sent (one RocksDB write batch: a
key's group reads only its own keys, which no other group of the batch writes), and only then records the
persisted offset, once per changelog partition, from the acknowledgement of the last batch sent to it (batches of
one partition are acknowledged in order, and all their records are in the local store by then). A crash before
the local write loses nothing: the changelog records past the persisted offset are read back at start. The
changelog records are the same bytes either way: recovery, standbys and the bulk restore read them as before.
"""
from __future__ import annotations

import asyncio
from typing import Any

import faust

from app.agents.publish import Outbox
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
    """Writes of one batch, whose changelog records go into the batch's outbox. Use `put`/`delete` with the key's
    event current (batches.by_key does that), then `done()` once the outbox has been sent. Reads (`get`) see the
    local store as it was before the batch."""

    def __init__(self, outbox: Outbox) -> None:
        self._outbox = outbox
        # each table partition written: its changelog topic and its RocksDB write batch
        self._written: dict[tuple[faust.TableT, int], tuple[str, Any]] = {}

    async def put(self, table: faust.TableT, key: bytes, value: bytes) -> None:
        if not DIRECT:
            table[key] = value
            return
        partition = internals.current_partition()
        changelog, local = self._partition(table, partition)
        local.put(key, value)
        await self._outbox.add(changelog, key, value, partition=partition)

    async def delete(self, table: faust.TableT, key: bytes) -> None:
        """A tombstone, also when the key is already gone locally."""
        if not DIRECT:
            del table[key]
            return
        partition = internals.current_partition()
        changelog, local = self._partition(table, partition)
        local.delete(key)
        await self._outbox.add(changelog, key, None, partition=partition)

    def _partition(self, table: faust.TableT, partition: int) -> tuple[str, Any]:
        written = self._written.get((table, partition))
        if written is None:
            written = self._written[(table, partition)] = (table.changelog_topic.get_topic_name(),
                                                           internals.write_batch())
        return written

    def done(self) -> None:
        """After the outbox was sent: write the local stores, then record each changelog partition's persisted
        offset once its last batch is acknowledged."""
        for (table, partition), (_changelog, local) in self._written.items():
            internals.store_write(table, partition, local)
        for (table, partition), (changelog, _local) in self._written.items():
            fut, count = self._outbox.last_sent(changelog, partition)
            fut.add_done_callback(lambda f, t=table, p=partition, n=count: _persisted(t, p, f, n))
        self._written.clear()


def _persisted(table: faust.TableT, partition: int, fut: asyncio.Future, records: int) -> None:
    if fut.cancelled() or fut.exception() is not None or fut.result() is None:
        return  # refused: the commit guard stops the worker; the persisted offset stays behind
    internals.set_persisted_offset(table, partition, fut.result().offset + records - 1)  # the batch's last record
