"""Agent `cards`: read the input topic; validate each delivery, and fold the ones on their card's partition into
entry rows and the card aggregate; publish joins and entries; hand each card's summary to its customer.

A delivery on its card's partition (the one its voucher id is keyed to: always so for a delivery keyed by it, what
the webhook endpoint and `backfill` write) is folded where it is, one Kafka hop from input to card. Any other
valid delivery is written again to the input topic, keyed by its voucher id, with a `forwarded-from` header, and
folded when that copy is read. A card's input is then one partition of one topic, which keeps its replay rule
exact (logic/cards.py).

A summary whose customer's partition this worker holds too (always with one worker) is folded into the customers
table in the same batch, after the cards (agents/customers.py, `fold_here`); any other is written to
`pending-points-card-updates` for the worker that holds it.
"""
from __future__ import annotations

import logging

import topics
from app.agents import customers as customers_agent
from app.agents import tables
from app.agents.batches import batch_output, by_key, take
from app.agents.deadletter import dead_letter
from app.agents.publish import Outbox
from app.compat import internals
from app.logic import cards, routing
from app.logic.decode import Accepted, Rejected, Skipped, decode
from app.main import (
    activations_topic, app, card_updates_topic, cards_table, entries_table, entries_topic, partition_of, project_tz,
    settings, webhooks_topic,
)
from app.models import codec
from app.models.records import CardSummary, DeadLetterReason, EntryRecord, NormalizedEvent
from app.ops import metrics

logger = logging.getLogger(__name__)
RETIRE_AFTER = settings.retire_after
MAX_DELIVERY, MAX_RECORD = settings.max_delivery_bytes, settings.kafka_max_record_bytes


@app.agent(webhooks_topic, name="cards")
async def process_cards(stream):
    async for batch in take(stream, "cards"):  # raw deliveries
        local: tuple[list[CardSummary], list] = ([], [])  # summaries for customers this worker holds; their input
        lock, held = customers_agent.table_lock, False
        try:
            async with batch_output("cards", batch, ("customers", local[1])) as (out, writes):
                here = []
                for message in batch:
                    event = await _intake(message, out)
                    if event is not None:
                        here.append((event.voucher_id.encode(), event, message))  # on its card's partition
                customers_here = customers_agent.partitions_here()
                for key, group in by_key(here):  # one aggregate read and write per card per batch
                    await _card(key, group, out, writes, customers_here, local)
                if local[0]:  # after the cards: their summaries folded in the same batch (outbox, table writes),
                    await lock.acquire()  # reading and writing the customers table under its lock until written
                    held = True
                    await customers_agent.fold_here(local[0], batch[-1], out, writes)
        finally:
            if held:
                lock.release()


async def _intake(message, out: Outbox) -> NormalizedEvent | None:
    """Validate one delivery: its event if it is folded here; else forward, skip or dead-letter it."""
    try:
        headers = dict(message.headers or ())
        event = routing.carried(headers)  # a copy this stage forwarded: its event, decoded when it was forwarded
        if event is None and topics.FORWARDED_FROM in headers:
            metrics.copy_decoded()
        outcome = Accepted(event) if event is not None else decode(message.value, headers, max_bytes=MAX_DELIVERY)
    except Exception as exc:  # decode is total; this guards the partition against a bug in it
        logger.exception("decode failed")
        outcome = Rejected(DeadLetterReason(code="internal_error", detail=repr(exc)[:300]))
    step = routing.route(outcome, message.key, message.value, message.headers,
                         (message.topic, message.partition, message.offset), home=partition_of, size=internals.record_size,
                         max_record=MAX_RECORD)
    if isinstance(step, routing.Fold):
        metrics.delivery(step.event.step.value, "processed")
        return step.event
    if isinstance(step, routing.Forward):
        # The copy keeps the delivery's timestamp, so latency is measured from when the delivery was written.
        await out.add(webhooks_topic, step.key, message.value, timestamp=message.timestamp, headers=step.headers)
        metrics.forwarded(step.event.step.value)
    elif isinstance(step, Skipped):
        metrics.skipped(step.event_type)
        logger.debug("skipped unsupported event type %r", step.event_type)
    else:
        await dead_letter(message, step.reason, event_type=step.event_type or "unknown")
    return None


async def _card(key: bytes, group, out: Outbox, writes: tables.TableWrites, customers_here: frozenset[int],
                local: tuple[list[CardSummary], list]) -> None:
    voucher_id = key.decode()

    def row(entry_id: str) -> EntryRecord | None:
        value = tables.get(entries_table, cards.entry_key(voucher_id, entry_id))
        return codec.load(EntryRecord, value) if value is not None else None

    def side_row(seq: int) -> EntryRecord | None:  # a converted entry's copy
        value = tables.get(cards_table, cards.legacy_key(voucher_id, seq))
        return codec.load(EntryRecord, value) if value is not None else None

    last = group[-1][1]
    plan = cards.plan_batch(tables.get(cards_table, key), [(ev, message.offset) for ev, message in group], row,
                            side_row, internals.committed_offset(app.consumer, last.tp), project_tz, RETIRE_AFTER)
    outputs = plan.outputs
    here = False
    for summary in outputs.summaries:  # re-key: voucher -> customer
        customer = summary.customer_id.encode()
        if partition_of(customer) in customers_here:
            local[0].append(summary)  # folded by this worker after the batch, no Kafka hop
            here = here or not summary.removed  # its owner's: the deliveries' end-to-end latency is observed
        else:
            await out.add(card_updates_topic, customer, codec.dump(summary), timestamp=last.timestamp)
    for joined in outputs.activations:
        await out.add(activations_topic, joined.pending_points_id.encode(), codec.dump(joined))
    for entry in outputs.entries:
        await out.add(entries_topic, entry.pending_points_id.encode(), codec.dump(entry))
    if here:
        local[1].extend(message for _ev, message in group)  # their end-to-end latency is observed there
    # State is written after the outputs are queued, in the plan's order: converted-entry copies, entry rows, the
    # aggregate last. Any subset of these writes surviving a crash is safe (logic/cards.py); a replay writes them
    # again so the changelogs surely have them.
    for seq, rec in plan.side_puts.items():
        await writes.put(cards_table, cards.legacy_key(voucher_id, seq), codec.dump(rec))
    for seq in plan.side_deletes:  # a tombstone even when the key is already gone locally
        await writes.delete(cards_table, cards.legacy_key(voucher_id, seq))
    for rec, index in plan.rows:
        await writes.put(entries_table, cards.entry_key(voucher_id, rec.entry.id), codec.dump(rec))
        if index:
            await writes.put(entries_table, cards.index_key(voucher_id, rec.seq, rec.entry.id), b"")
    if plan.card is not None:
        await writes.put(cards_table, key, codec.dump(plan.card))
    if outputs.frozen:
        metrics.change("entries", "retired_changed")
    metrics.change("cards", plan.kind)
