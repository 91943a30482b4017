"""A loyalty card's state: apply one normalized event, return the new state and what to publish."""
from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass, field
from zoneinfo import ZoneInfo

from app.logic import entries
from app.models.records import (
    CardState,
    CardSummary,
    CardView,
    EntryState,
    NextActivation,
    NormalizedEvent,
    Owner,
    PendingPointsActivation,
    Status,
    VoucherPoints,
    VoucherView,
)

_MIN = dt.datetime.min.replace(tzinfo=dt.timezone.utc)


@dataclass(slots=True)
class CardOutputs:
    summaries: list[CardSummary] = field(default_factory=list)  # -> pending-points-card-updates
    activations: list[PendingPointsActivation] = field(default_factory=list)  # -> pending-points-activations
    replay: bool = False  # the record was applied before a crash: rewrite the state so the changelog has it


def _owner_of(event: NormalizedEvent) -> Owner:
    card_as_of = event.card.as_of if event.card else None
    obs = event.observation
    return Owner(
        customer_id=event.customer_id,
        campaign_id=event.campaign_id,
        stamp=(card_as_of, obs.occurred_at, obs.updated_at or obs.created_at),
    )


def _owner_key(owner: Owner) -> tuple:
    return (tuple(t or _MIN for t in owner.stamp), owner.customer_id, owner.campaign_id or "")


def _snapshot_newer(a, b) -> bool:
    """Order of card snapshots: newer `as_of`, then event time, then content."""
    return entries.after((a.as_of or _MIN, a.occurred_at or _MIN), (b.as_of or _MIN, b.occurred_at or _MIN), a, b)


def _merge(card: CardState | None, event: NormalizedEvent) -> CardState:
    owner = _owner_of(event)
    if card is None:
        card = CardState(voucher_id=event.voucher_id, owner=owner)
    updates: dict = {}
    if _owner_key(owner) > _owner_key(card.owner):
        updates["owner"] = owner
    if event.card is not None and (card.snapshot is None or _snapshot_newer(event.card, card.snapshot)):
        updates["snapshot"] = event.card
    entry = card.entries.get(event.entry_id) or EntryState(id=event.entry_id)
    merged = entries.merge(entry, event.step, event.observation)
    if merged is not entry or event.entry_id not in card.entries:
        updates["entries"] = {**card.entries, event.entry_id: merged}
    return card.model_copy(update=updates) if updates else card


def apply(card: CardState | None, event: NormalizedEvent, offset: int, tz: ZoneInfo) -> tuple[CardState, CardOutputs]:
    """Fold one event into the card (a batch of one)."""
    return apply_batch(card, [(event, offset)], tz)


def apply_batch(
    card: CardState | None, items: Sequence[tuple[NormalizedEvent, int]], tz: ZoneInfo
) -> tuple[CardState, CardOutputs]:
    """Fold this card's events, in offset order, into the card; return the new state and what to publish.

    The state is folded event by event (the version counts state-changing events, so it does not depend on how
    the input was cut into batches, and a card reprocessed after a crash gets the same versions again). The
    outputs are derived once, from the state before and after the batch: one summary per card, one join per
    entry, whatever the batch size. A record at or below `last_offset` is a replay after a crash (its state
    change is already in the changelog, but its outputs may not have reached the broker), so the outputs it
    would have produced are derived from the current state and published again.
    """
    if not items:
        raise ValueError("apply_batch needs at least one event")
    outputs = CardOutputs()
    first_offset = card.last_offset if card is not None else -1
    new = card
    touched: dict[str, bool] = {}  # entry id -> replayed (ordered: outputs follow arrival order)
    for event, offset in items:
        if offset <= first_offset:
            outputs.replay = True
            touched[event.entry_id] = True
            continue
        merged = _merge(new, event)
        if merged is not new:
            new = merged.model_copy(update={"version": merged.version + 1, "last_offset": offset})
            touched.setdefault(event.entry_id, False)
    if new is None:  # only replays of a card we do not hold: impossible unless the table lost it
        raise ValueError("replayed events for a card that is not in the table")
    if new is card and not outputs.replay:
        return card, outputs

    new_facts = _facts(new)
    if card is None or outputs.replay:
        outputs.summaries.append(_summary(new, new_facts))
    else:
        old_facts = _facts(card)
        if card.owner.customer_id != new.owner.customer_id:
            # The card changed hands: the previous owner must stop counting it.
            removed = _summary(card, old_facts).model_copy(update={"version": new.version, "removed": True})
            outputs.summaries.append(removed)
        if old_facts != new_facts:
            outputs.summaries.append(_summary(new, new_facts))

    for entry_id, replayed in touched.items():
        new_act = entries.activation(new.entries[entry_id], new.voucher_id, tz) if entry_id in new.entries else None
        if new_act is None:
            continue
        old_entry = card.entries.get(entry_id) if card is not None and not replayed else None
        if replayed or old_entry is None or new_act != entries.activation(old_entry, new.voucher_id, tz):
            outputs.activations.append(new_act)
    return new, outputs


def _totals(card: CardState) -> tuple[int, int, int, tuple[dt.date, int] | None]:
    pending = activated = canceled = 0
    due: dict[dt.date, int] = {}
    for entry in card.entries.values():
        st, pts = entries.status(entry), entries.points(entry)
        if st is Status.PENDING:
            pending += pts
            day = entries.activates_at(entry)
            if day is not None:
                due[day] = due.get(day, 0) + pts
        elif st is Status.ACTIVATED:
            activated += pts
        else:
            canceled += pts
    nxt = None
    if due:
        day = min(due)
        nxt = (day, due[day])
    return pending, activated, canceled, nxt


def _updated_at(card: CardState) -> dt.datetime | None:
    """Newest event time known for the card (event time, not processing time, so replays agree)."""
    stamps = [t for t in card.owner.stamp if t is not None]
    if card.snapshot is not None:
        stamps += [t for t in (card.snapshot.as_of, card.snapshot.occurred_at) if t is not None]
    for entry in card.entries.values():
        for obs in (entry.added, entry.updated, entry.activated, entry.canceled):
            if obs is not None:
                stamps += [t for t in (obs.occurred_at, obs.updated_at, obs.created_at, obs.activated_at) if t]
    return max(stamps) if stamps else None


def _facts(card: CardState) -> tuple:
    """Everything a card's summary says except its version, as plain values: comparing two cards' facts is
    how a batch decides whether to publish, without building the models."""
    s = card.snapshot
    snapshot = (s.points, s.balance, s.pending_points) if s is not None else None
    return (card.owner.customer_id, card.owner.campaign_id, _totals(card), snapshot, _updated_at(card))


def _voucher_points(card: CardState, facts: tuple) -> VoucherPoints:
    _customer, campaign_id, (pending, activated, canceled, nxt), snapshot, _updated = facts
    return VoucherPoints(
        voucher_id=card.voucher_id,
        campaign_id=campaign_id,
        pending_points=pending,
        activated_points=activated,
        canceled_points=canceled,
        next_activation=NextActivation(date=nxt[0], points=nxt[1]) if nxt is not None else None,
        card=CardView(points=snapshot[0], balance=snapshot[1], pending_points=snapshot[2]) if snapshot else None,
    )


def _summary(card: CardState, facts: tuple) -> CardSummary:
    return CardSummary(
        customer_id=facts[0],
        voucher_id=card.voucher_id,
        version=card.version,
        points=_voucher_points(card, facts),
        updated_at=facts[4],
    )


def voucher_points(card: CardState) -> VoucherPoints:
    return _voucher_points(card, _facts(card))


def summary(card: CardState) -> CardSummary:
    return _summary(card, _facts(card))


def view(card: CardState) -> VoucherView:
    vp = voucher_points(card)
    return VoucherView(
        voucher_id=card.voucher_id,
        customer_id=card.owner.customer_id,
        campaign_id=vp.campaign_id,
        pending_points=vp.pending_points,
        activated_points=vp.activated_points,
        canceled_points=vp.canceled_points,
        next_activation=vp.next_activation,
        card=vp.card,
        entries=[entries.view(e) for _, e in sorted(card.entries.items())],
        updated_at=_updated_at(card),
    )
