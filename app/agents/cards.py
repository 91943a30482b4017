"""Agent `cards`: fold normalized events into entry rows and the card aggregate; publish summaries, joins, entries."""
from __future__ import annotations

from app.ops import metrics
from app.agents.batches import by_key, loaded, take
from app.agents.publish import publish
from app.logic import cards
from app.main import (
    activations_topic, app, card_updates_topic, cards_table, entries_table, entries_topic, events_topic, project_tz,
    settings,
)
from app.models import codec
from app.models.records import EntryRecord, NormalizedEvent

RETIRE_AFTER = settings.retire_after


@app.agent(events_topic, name="cards")
async def process_cards(stream):
    async for batch in take(stream, "cards"):  # (voucher_id, NormalizedEvent) records
        valid = await loaded(batch, NormalizedEvent, lambda ev: ev.voucher_id)
        for key, group in by_key(valid):  # one aggregate read and write per card per batch
            await _card(key, group)
        metrics.stage_done("cards", (event.message.timestamp for event in batch))


async def _card(key: bytes, group) -> None:
    voucher_id = key.decode()
    loaded_ = cards.load_for_batch(
        cards_table.get(key), group[0][1].message.offset, lambda: cards_table.get(cards.legacy_key(voucher_id)),
        lambda eid: entries_table.get(cards.entry_key(voucher_id, eid)) is not None, RETIRE_AFTER)
    card, upgraded, legacy_doc = loaded_.card, loaded_.rows, loaded_.legacy_doc

    def row(entry_id: str) -> EntryRecord | None:
        if entry_id in upgraded:
            return upgraded[entry_id]
        value = entries_table.get(cards.entry_key(voucher_id, entry_id))
        return codec.load(EntryRecord, value) if value is not None else None

    res = cards.apply_batch(card, [(ev, event.message.offset) for ev, event in group], row, project_tz,
                            RETIRE_AFTER)
    out = res.outputs
    ts = group[-1][1].message.timestamp  # the newest delivery's, carried along (see ingest)
    for summary in out.summaries:  # re-key: voucher -> customer
        await publish(card_updates_topic, summary.customer_id.encode(), codec.dump(summary), timestamp=ts)
    for joined in out.activations:
        await publish(activations_topic, joined.pending_points_id.encode(), codec.dump(joined))
    for entry in out.entries:
        await publish(entries_topic, entry.pending_points_id.encode(), codec.dump(entry))
    # State is written after the outputs are queued. Entry rows first, the aggregate last; any subset of these
    # writes surviving a crash is safe (logic/cards.py), a replay writes them again so the changelogs surely
    # have them. A card in the old whole-card format is converted here: its document is kept under its side key
    # (before the aggregate, same changelog partition) and all its rows are written once.
    if legacy_doc is not None:
        cards_table[cards.legacy_key(voucher_id)] = legacy_doc
    if out.frozen:
        metrics.change("entries", "retired_changed")
    for entry_id, rec in upgraded.items():
        if entry_id not in res.rows:
            _write_row(voucher_id, rec, index=True)
    indexed = set(res.indexed)
    for entry_id, rec in res.rows.items():
        _write_row(voucher_id, rec, index=entry_id in indexed or entry_id in upgraded)
    if res.changed or upgraded:
        cards_table[key] = codec.dump(res.card)
        metrics.change("cards", "replay" if out.replay else "changed")
    else:
        metrics.change("cards", "unchanged")


def _write_row(voucher_id: str, rec: EntryRecord, *, index: bool) -> None:
    entries_table[cards.entry_key(voucher_id, rec.entry.id)] = codec.dump(rec)
    if index:
        entries_table[cards.index_key(voucher_id, rec.seq, rec.entry.id)] = b""
