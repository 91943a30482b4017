"""Agent `cards`: fold normalized events into the per-voucher table; publish card summaries and joins."""
from __future__ import annotations

import logging

from app import metrics
from app.agents.batches import by_key, loaded, take
from app.agents.publish import publish
from app.logic import cards
from app.main import activations_topic, app, card_updates_topic, cards_table, events_topic, project_tz
from app.models import codec
from app.models.records import CardState, NormalizedEvent

logger = logging.getLogger(__name__)


@app.agent(events_topic, name="cards")
async def process_cards(stream):
    async for batch in take(stream, "cards"):  # (voucher_id, NormalizedEvent) records
        valid = await loaded(batch, NormalizedEvent, lambda ev: ev.voucher_id)
        for key, group in by_key(valid):  # one table read and write per card per batch
            raw = cards_table.get(key)
            card = codec.load(CardState, raw) if raw is not None else None
            new, out = cards.apply_batch(card, [(ev, event.message.offset) for ev, event in group], project_tz)
            ts = group[-1][1].message.timestamp  # the newest delivery's, carried along (see ingest)
            for summary in out.summaries:  # re-key: voucher -> customer
                await publish(card_updates_topic, summary.customer_id.encode(), codec.dump(summary), timestamp=ts)
            for joined in out.activations:
                await publish(activations_topic, joined.pending_points_id.encode(), codec.dump(joined))
            if new is not card or out.replay:
                # Written after the outputs are queued; a replay writes it again so the changelog surely has it.
                cards_table[key] = codec.dump(new)
                metrics.change("cards", "replay" if out.replay else "changed")
            else:
                metrics.change("cards", "unchanged")
        metrics.stage_done("cards", (event.message.timestamp for event in batch))
