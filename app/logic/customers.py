"""A customer's state: the latest summary of each card they hold, and the record derived from it."""
from __future__ import annotations

import datetime as dt

from app.models.records import CardSummary, CustomerPointState, CustomerState, NextActivation


def apply(
    state: CustomerState | None, card: CardSummary, offset: int
) -> tuple[CustomerState, CustomerPointState | None]:
    """Fold one card summary in; return the new state and the record to publish, if any.

    Summaries carry the card's version, so a stale or duplicate summary changes nothing. A record at or below
    `last_offset` is a replay after a crash and publishes the current record again.
    """
    if state is not None and offset <= state.last_offset:
        return state, record(state)
    if state is None:
        state = CustomerState(customer_id=card.customer_id)
    known = state.cards.get(card.voucher_id)
    if known is not None and known.version >= card.version:
        return state, None
    if card.removed and known is None:
        return state, None
    cards = dict(state.cards)
    if card.removed:
        del cards[card.voucher_id]
    else:
        cards[card.voucher_id] = card
    new = state.model_copy(update={"cards": cards, "last_offset": offset})
    before, after = record(state), record(new)
    if known is not None and before == after:
        return new, None
    return new, after


def record(state: CustomerState) -> CustomerPointState:
    pending = activated = canceled = 0
    nxt: NextActivation | None = None
    stamps: list[dt.datetime] = []
    for card in state.cards.values():
        p = card.points
        pending += p.pending_points
        activated += p.activated_points
        canceled += p.canceled_points
        if p.next_activation is not None:
            if nxt is None or p.next_activation.date < nxt.date:
                nxt = p.next_activation
            elif p.next_activation.date == nxt.date:
                nxt = NextActivation(date=nxt.date, points=nxt.points + p.next_activation.points)
        if card.updated_at is not None:
            stamps.append(card.updated_at)
    return CustomerPointState(
        customer_id=state.customer_id,
        pending_points=pending,
        activated_points=activated,
        canceled_points=canceled,
        next_activation=nxt,
        vouchers={vid: c.points for vid, c in sorted(state.cards.items())},
        updated_at=max(stamps) if stamps else None,
    )
