"""A broker-free driver of the same pure logic the agents run: decode -> cards.apply -> customers.apply."""
from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass, field

from app.logic import cards, customers
from app.logic.decode import Accepted, Rejected, decode
from app.models import codec
from app.models.records import CardAgg, CustomerState, EntryRecord, NormalizedEvent

RETIRE_AFTER = dt.timedelta(hours=72)


@dataclass
class Driver:
    max_bytes: int = 1 << 20
    tz: dt.tzinfo = dt.timezone.utc
    retire_after: dt.timedelta = RETIRE_AFTER
    cards: dict[str, CardAgg] = field(default_factory=dict)
    rows: dict[tuple[str, str], EntryRecord] = field(default_factory=dict)  # (voucher id, entry id) -> row
    customers: dict[str, CustomerState] = field(default_factory=dict)
    customer_records: dict[str, dict] = field(default_factory=dict)  # latest per key, as published
    activations: dict[str, dict] = field(default_factory=dict)
    entry_records: dict[str, dict] = field(default_factory=dict)
    published: int = 0
    dead_letters: int = 0
    _offset: int = 0  # next offset of the card stage's input
    _summary_offset: int = 0  # next offset on pending-points-card-updates

    def feed(self, value: bytes | None, headers: dict[str, bytes]) -> None:
        outcome = decode(value, headers, max_bytes=self.max_bytes)
        if isinstance(outcome, Rejected):
            self.dead_letters += 1
        if isinstance(outcome, Accepted):
            self.feed_event(outcome.event)

    def feed_event(self, ev: NormalizedEvent) -> None:
        self.feed_batch([ev])

    def apply_card(self, voucher_id: str, items) -> cards.CardResult:
        """One card's group through the card stage, its state written back."""
        res = cards.apply_batch(self.cards.get(voucher_id), items,
                                lambda eid: self.rows.get((voucher_id, eid)), self.tz, self.retire_after)
        self.cards[voucher_id] = res.card
        for eid, row in res.rows.items():
            self.rows[(voucher_id, eid)] = row
        return res

    def publish_card(self, res: cards.CardResult) -> list:
        for a in res.outputs.activations:
            self.activations[a.pending_points_id] = json.loads(codec.dump(a))
        for e in res.outputs.entries:
            self.entry_records[e.pending_points_id] = json.loads(codec.dump(e))
        return list(res.outputs.summaries)

    def feed_batch(self, events: list[NormalizedEvent]) -> None:
        """One batch through both stages, grouped by key as the agents group a batch taken from a partition."""
        by_card: dict[str, list] = {}
        for ev in events:
            self._offset += 1
            by_card.setdefault(ev.voucher_id, []).append((ev, self._offset))
        summaries = []
        for voucher_id, items in by_card.items():
            summaries += self.publish_card(self.apply_card(voucher_id, items))
        self.feed_summaries(summaries)

    def feed_summaries(self, summaries) -> None:
        by_customer: dict[str, list] = {}
        for summary in summaries:
            self._summary_offset += 1
            by_customer.setdefault(summary.customer_id, []).append((summary, self._summary_offset))
        for customer_id, items in by_customer.items():
            state, record = customers.apply_batch(self.customers.get(customer_id), items)
            self.customers[customer_id] = state
            if record is not None:
                self.published += 1
                self.customer_records[customer_id] = json.loads(codec.dump(record))
