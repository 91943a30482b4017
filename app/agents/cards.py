"""Agent `cards`: fold normalized events into entry rows and the card aggregate; publish summaries, joins, entries."""
from __future__ import annotations

from app.agents.batches import batch_output, by_key, loaded, take
from app.agents.publish import Outbox
from app.agents import tables
from app.compat import internals
from app.logic import cards
from app.main import (
    activations_topic, app, card_updates_topic, cards_table, entries_table, entries_topic, events_topic, project_tz,
    settings,
)
from app.models import codec
from app.models.records import EntryRecord, NormalizedEvent
from app.ops import metrics

RETIRE_AFTER = settings.retire_after


@app.agent(events_topic, name="cards")
async def process_cards(stream):
    async for batch in take(stream, "cards"):  # (voucher_id, NormalizedEvent) records
        async with batch_output("cards", batch) as (out, writes):
            valid = await loaded(batch, NormalizedEvent, lambda ev: ev.voucher_id)
            for key, group in by_key(valid):  # one aggregate read and write per card per batch
                await _card(key, group, out, writes)


async def _card(key: bytes, group, out: Outbox, writes: tables.TableWrites) -> None:
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
    for summary in outputs.summaries:  # re-key: voucher -> customer
        await out.add(card_updates_topic, summary.customer_id.encode(), codec.dump(summary), timestamp=last.timestamp)
    for joined in outputs.activations:
        await out.add(activations_topic, joined.pending_points_id.encode(), codec.dump(joined))
    for entry in outputs.entries:
        await out.add(entries_topic, entry.pending_points_id.encode(), codec.dump(entry))
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
