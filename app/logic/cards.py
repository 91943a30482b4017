"""A loyalty card's state: apply one normalized event, return the new state and what to publish."""
from __future__ import annotations

import datetime as dt
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


def _snapshot_key(snapshot) -> tuple:
    return (snapshot.as_of or _MIN, snapshot.occurred_at or _MIN, snapshot.model_dump_json())


def _merge(card: CardState | None, event: NormalizedEvent) -> CardState:
    owner = _owner_of(event)
    if card is None:
        card = CardState(voucher_id=event.voucher_id, owner=owner)
    updates: dict = {}
    if _owner_key(owner) > _owner_key(card.owner):
        updates["owner"] = owner
    if event.card is not None and (card.snapshot is None or _snapshot_key(event.card) > _snapshot_key(card.snapshot)):
        updates["snapshot"] = event.card
    entry = card.entries.get(event.entry_id) or EntryState(id=event.entry_id)
    merged = entries.merge(entry, event.step, event.observation)
    if merged is not entry or event.entry_id not in card.entries:
        updates["entries"] = {**card.entries, event.entry_id: merged}
    return card.model_copy(update=updates) if updates else card


def apply(card: CardState | None, event: NormalizedEvent, offset: int, tz: ZoneInfo) -> tuple[CardState, CardOutputs]:
    """Fold one event into the card.

    Publishes only what changed. A record at or below `last_offset` is a replay after a crash (its state change
    is already in the changelog, but its outputs may not have reached the broker), so the outputs it would
    have produced are derived from the current state and published again.
    """
    outputs = CardOutputs()
    if card is not None and offset <= card.last_offset:
        outputs.replay = True
        outputs.summaries.append(summary(card))
        joined = card.entries.get(event.entry_id)
        act = entries.activation(joined, card.voucher_id, tz) if joined else None
        if act is not None:
            outputs.activations.append(act)
        return card, outputs

    new = _merge(card, event)
    if new is card:
        return card, outputs
    new = new.model_copy(update={"version": new.version + 1, "last_offset": offset})

    old_summary = summary(card) if card is not None else None
    new_summary = summary(new)
    if card is not None and card.owner.customer_id != new.owner.customer_id:
        # The card changed hands: the previous owner must stop counting it.
        outputs.summaries.append(old_summary.model_copy(update={"version": new.version, "removed": True}))
    if old_summary is None or _differs(old_summary, new_summary):
        outputs.summaries.append(new_summary)

    old_entry = card.entries.get(event.entry_id) if card is not None else None
    new_act = entries.activation(new.entries[event.entry_id], new.voucher_id, tz)
    old_act = entries.activation(old_entry, new.voucher_id, tz) if old_entry is not None else None
    if new_act is not None and new_act != old_act:
        outputs.activations.append(new_act)
    return new, outputs


def _differs(a: CardSummary, b: CardSummary) -> bool:
    return a.customer_id != b.customer_id or a.points != b.points or a.updated_at != b.updated_at


def _totals(card: CardState) -> tuple[int, int, int, NextActivation | None]:
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
        nxt = NextActivation(date=day, points=due[day])
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


def _card_view(card: CardState) -> CardView | None:
    s = card.snapshot
    if s is None:
        return None
    return CardView(points=s.points, balance=s.balance, pending_points=s.pending_points)


def voucher_points(card: CardState) -> VoucherPoints:
    pending, activated, canceled, nxt = _totals(card)
    return VoucherPoints(
        voucher_id=card.voucher_id,
        campaign_id=card.owner.campaign_id,
        pending_points=pending,
        activated_points=activated,
        canceled_points=canceled,
        next_activation=nxt,
        card=_card_view(card),
    )


def summary(card: CardState) -> CardSummary:
    return CardSummary(
        customer_id=card.owner.customer_id,
        voucher_id=card.voucher_id,
        version=card.version,
        points=voucher_points(card),
        updated_at=_updated_at(card),
    )


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
