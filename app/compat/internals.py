"""Accessors for faust-streaming / aiokafka internals the service reads or drives (no patches here).

Each one is a private attribute or undocumented method: kept here, named for what we use it for, so an upgrade
breaks in one place. Rows in README.md here.
"""
from __future__ import annotations

import weakref
from collections.abc import Callable
from typing import Any

import faust
import rocksdict
from aiokafka.record.default_records import DefaultRecordBatchBuilder
from faust import streams
from faust.stores.rocksdb import Store as RocksDBStore

# --- streams (agents/batches.py) -----------------------------------------------------------------------------


def add_passive_processor(stream: faust.StreamT, processor) -> None:
    """Run `processor` on every record while the stream drains in the background (like `Stream.take_events`)."""
    stream.add_processor(processor)
    stream._enable_passive(aiter(stream.channel))


def remove_processor(stream: faust.StreamT, processor) -> None:
    stream._processors.remove(processor)


def make_current(event: faust.EventT) -> None:
    """Make `event` the current event: Faust routes table writes (changelog and RocksDB partition) by it."""
    streams._current_event.set(weakref.ref(event))


# --- tables (views/vouchers.py, ops/health.py, startup/restore.py) -------------------------------------------

OFFSET_KEY: bytes = RocksDBStore.offset_key  # where Faust keeps the last changelog offset applied to a partition


def partition_dbs(table: faust.TableT) -> dict[int, rocksdict.Rdict]:
    """This worker's open RocksDB databases of a table, by partition (Faust's store has no range reads)."""
    return dict(getattr(table.data, "_dbs", {}))


def open_partition_db(table: faust.TableT, partition: int) -> rocksdict.Rdict:
    """A table partition's RocksDB, at Faust's path with Faust's options (before Faust opens it)."""
    store = table.data
    path = store.partition_path(partition)
    path.parent.mkdir(parents=True, exist_ok=True)
    return store.rocksdb_options.open(path)


def active_partitions(app: faust.App, table: faust.TableT) -> frozenset[int]:
    """The partitions of `table` this worker holds as active (not standby) in the current assignment."""
    changelog = table.changelog_topic.get_topic_name()
    return frozenset(tp.partition for tp in app.assignor.assigned_actives() if tp.topic == changelog)


def current_partition() -> int:
    """The partition of the current event (Faust routes table writes by it; see make_current)."""
    event = streams.current_event()
    if event is None:
        raise RuntimeError("table write outside of a batch: no current event")
    return event.message.partition


def store_get(table: faust.TableT, partition: int, key: bytes) -> bytes | None:
    """Read a key from the table's RocksDB of `partition` (the current event's): what `table.get(key)` does
    inside an agent, without Faust's mapping layers (a missing key there costs a raised and caught KeyError)
    and without its in-memory key->partition index (an LRU cache behind a lock; only used to find a key when no
    event is current, where the views look in every partition instead)."""
    return table.data._db_for_partition(partition).get(key)


def write_batch() -> Any:
    """An empty RocksDB write batch, raw keys and values like Faust's own databases (for `store_write`)."""
    return rocksdict.WriteBatch(raw_mode=True)


def store_write(table: faust.TableT, partition: int, batch: Any) -> None:
    """Apply a write batch (puts and deletes) to the table's local RocksDB of `partition` only, not its changelog:
    what Faust's `table[key] = value` and `del table[key]` do after queueing the changelog record, one batch
    instead of one write (and one write-ahead-log append) per key, and without Faust's key index."""
    table.data._db_for_partition(partition).write(batch)


def set_persisted_offset(table: faust.TableT, partition: int, offset: int) -> None:
    """Record in the partition's RocksDB that local state holds the changelog up to `offset`: what Faust does
    after every changelog record it sends (`Collection._on_changelog_sent`); recovery resumes after it."""
    table.data._db_for_partition(partition).put(RocksDBStore.offset_key, str(offset).encode())


def buffered_writes(producer: Any) -> int:
    """Records waiting in Faust's producer buffer (its changelog writes), not yet handed to aiokafka."""
    return producer.buffer.size


def count_buffer_handovers(producer: Any) -> Callable[[], int]:
    """Count the writes Faust's buffer has taken off its queue and not yet handed to aiokafka (its `send` may
    wait for room in a batch): returns a function giving that count. Install before the producer starts (its
    buffer task binds `_send_pending` when it starts)."""
    from app.compat import patch

    count = [0]

    def make(original):
        async def _send_pending(fut):
            count[0] += 1
            try:
                return await original(fut)
            finally:
                count[0] -= 1
        return _send_pending

    patch(producer.buffer, "_send_pending", make, "count writes in hand-over to aiokafka (commit guard)")
    return lambda: count[0]


async def flush_buffer(producer: Any) -> None:
    """Faust's buffer flush: returns when the buffer is empty, or after a 0.1 s stall with records still in it."""
    await producer.buffer.flush()


# --- consumer and producer (ops/health.py, views/routing.py, agents/publish.py) -------------------------------------------------


def committed_offset(consumer: Any, tp) -> int | None:
    """The input partition's offset last committed by this worker (None if unknown)."""
    return consumer._committed_offset.get(tp)


def consumer_position(consumer: Any, tp) -> int:
    """The next offset this worker will hand to its streams: after the last read, else the last commit, else 0."""
    read = consumer._read_offset.get(tp)
    committed = committed_offset(consumer, tp)
    return read + 1 if read is not None else committed if committed is not None else 0


async def wait_on_metadata(producer: Any, topic: str) -> bool:
    """Make an aiokafka producer's client (`kafka_producer(app)`: Faust's) fetch metadata for `topic`; False if it
    already had it."""
    client = producer.client
    if client.cluster.partitions_for_topic(topic) is not None:
        return False
    client.add_topic(topic)
    await client._wait_on_metadata(topic)
    return True


def record_size(key: bytes | None, value: bytes | None, headers: list) -> int:
    """A record's size as aiokafka's `send` checks it against `max_request_size` (its record-batch module's
    estimate, the Cython class at runtime)."""
    return DefaultRecordBatchBuilder.estimate_size_in_bytes(key, value, headers)


def kafka_producer(app: faust.App) -> Any:
    """The aiokafka producer behind Faust's (for `create_batch` / `send_batch`: agents/publish.py's Outbox)."""
    return app.producer._ensure_producer()


def partition_count(producer: Any, topic: str) -> int | None:
    """How many partitions `topic` has in an aiokafka producer's metadata (None: none yet, `wait_on_metadata`)."""
    partitions = producer.client.cluster.partitions_for_topic(topic)
    return len(partitions) if partitions is not None else None
