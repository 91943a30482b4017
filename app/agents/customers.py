"""Agent `customers`: fold card summaries into the per-customer table; publish `customer-point-state`.

A card's summary reaches its customer one of two ways. When the worker that folded the card also holds the
customer's partition of the customers table (always with one worker), the cards agent folds it there in the same
batch, after the cards (`fold_here`): no Kafka hop, and the summary is not written to
`pending-points-card-updates`. Otherwise it is written to that topic and this agent folds it from there. Both
hold the customers table's lock (`table_lock`) from their first read of it until their batch is written: a batch
reads the table as it was before the batch and writes at its end, so two batches overlapping (one of this
agent's and one of the cards agent's, at one of their awaits) could each miss the other's change.
"""
from __future__ import annotations

import asyncio
from collections.abc import Sequence

from faust.types import Message

from app.agents import tables
from app.agents.batches import at_partition, batch_output, by_key, loaded, take
from app.compat import internals
from app.logic import customers
from app.main import app, card_updates_topic, customer_state_topic, customers_table, partition_of
from app.models import codec
from app.models.records import CardSummary, CustomerState
from app.ops import metrics

table_lock = asyncio.Lock()
_UPDATES = card_updates_topic.get_topic_name()


@app.agent(card_updates_topic, name="customers")
async def process_customers(stream):
    async for batch in take(stream, "customers"):  # (customer_id, CardSummary) records
        async with table_lock, batch_output("customers", batch) as (out, writes):
            valid = await loaded(batch, CardSummary, lambda summary: summary.customer_id)
            for key, group in by_key(valid):  # one table read and write, one record per customer per batch
                await _fold(key, [(s, message.offset) for s, message in group], out, writes)


def partitions_here() -> frozenset[int]:
    """The customers table's partitions this worker holds as active (not standby) now: summaries for those are
    folded by `fold_here`. Read once per batch; a rebalance waits for the batch in hand (direct_feed)."""
    return internals.active_partitions(app, customers_table)


async def fold_here(summaries: Sequence[CardSummary], like: Message, out, writes: tables.TableWrites) -> None:
    """Fold the summaries of a cards agent's batch whose customers' partitions this worker holds (see
    `partitions_here`) into the customers table, with that batch's outbox and table writes (the caller holds
    `table_lock` until they are written): one table read and write, one record per customer. `like`: one of the
    batch's records. A crash before the batch is acknowledged reads its input again, and the cards stage
    publishes the summaries again (a replay, or a redo if the card's own write was lost too)."""
    groups: dict[bytes, list[tuple[CardSummary, None]]] = {}
    for summary in summaries:
        groups.setdefault(summary.customer_id.encode(), []).append((summary, None))
    for key, items in groups.items():
        current = at_partition(like, _UPDATES, partition_of(key))  # table reads and writes: the customer's partition
        await _fold(key, items, out, writes)
        del current


async def _fold(key: bytes, items: list[tuple[CardSummary, int | None]], out, writes: tables.TableWrites) -> None:
    raw = tables.get(customers_table, key)
    state = codec.load(CustomerState, raw) if raw is not None else None
    new, record = customers.apply_batch(state, items)
    if record is not None:
        await out.add(customer_state_topic, key, codec.dump(record))
    if new is not state or record is not None:
        await writes.put(customers_table, key, codec.dump(new))
        metrics.change("customers", "changed" if new is not state else "replay")
    else:
        metrics.change("customers", "unchanged")
