"""A customer's state: the latest summary of each card they hold, and the record derived from it."""
from __future__ import annotations

import datetime as dt
from collections.abc import Sequence

from app.models.records import CardSummary, CustomerPointState, CustomerState, NextActivation

# Removals remembered per customer (`CustomerState.removed`). A summary folded in place (app/agents/customers.py)
# can overtake older ones of the same card still unread on pending-points-card-updates (after a rebalance, or an
# upgrade with that topic not drained): a removal that arrives first must still win over them. A customer's cards
# rarely change hands, so the few latest removals are enough; the oldest is dropped beyond that.
MAX_REMOVALS = 16


def apply(
    state: CustomerState | None, card: CardSummary, offset: int | None
) -> tuple[CustomerState, CustomerPointState | None]:
    """Fold one card summary in (a batch of one)."""
    return apply_batch(state, [(card, offset)])


def apply_batch(
    state: CustomerState | None, items: Sequence[tuple[CardSummary, int | None]]
) -> tuple[CustomerState, CustomerPointState | None]:
    """Fold this customer's card summaries, in order; return the new state and the record to publish.

    Summaries carry the card's version, so a stale or duplicate summary changes nothing to the state. The record
    is derived once per batch, from the state after it, and published only if it differs from the one before.

    A summary's offset is its `pending-points-card-updates` offset, or None for one folded where its card was
    folded (app/agents/customers.py, `fold_here`; it leaves `last_offset` as it is). A summary read from the
    topic at or below `last_offset` is a replay after a crash, and publishes the current record again. So does a
    summary that changes nothing, for a customer with a state, whichever way it came: it may repeat one folded in
    place whose record (or state write) a crash lost. The cards stage then replays or redoes its batch, whose
    input was not committed, and publishes the summary again, in place or (after a rebalance) through the topic
    at a new offset. Outside crashes that happens only for a summary overtaken by a newer one.

    A removal (the card moved to another customer) is remembered by its version (`removed`, the latest
    MAX_REMOVALS), also for a card the customer does not hold: a summary folded in place can overtake older ones
    of its card still unread on the topic (after a rebalance), and those must not bring the card back.
    """
    if not items:
        raise ValueError("apply_batch needs at least one summary")
    first_offset = state.last_offset if state is not None else -1
    new = state if state is not None else CustomerState(customer_id=items[0][0].customer_id)
    replay = changed = False
    visible = False  # the record surely differs (a card came, went, or its points changed)
    stamps = False  # only a card's updated_at changed: the record may or may not differ
    for card, offset in items:
        if offset is not None and offset <= first_offset:
            replay = True
            continue
        known = new.cards.get(card.voucher_id)
        held = known.version if known is not None else new.removed.get(card.voucher_id, -1)
        if held >= card.version:  # stale or a repeat (also of a removal: its version is remembered)
            replay = replay or state is not None  # nothing held: no record to repeat
            continue
        cards, removed = dict(new.cards), dict(new.removed)
        if card.removed:
            cards.pop(card.voucher_id, None)
            removed[card.voucher_id] = card.version
            if len(removed) > MAX_REMOVALS:  # one more than the bound at most
                del removed[min(removed, key=removed.__getitem__)]
        else:
            cards[card.voucher_id] = card
            removed.pop(card.voucher_id, None)
        if known is None:  # a card came; a removal of one not held only remembers its version: no record change
            visible = visible or not card.removed
        else:
            visible = visible or card.removed or known.points != card.points
        stamps = stamps or (known is not None and known.updated_at != card.updated_at)
        new = new.model_copy(update={"cards": cards, "removed": removed,
                                     "last_offset": new.last_offset if offset is None else offset})
        changed = True
    if replay:
        return new, record(new)
    if not changed:
        return new, None
    after = record(new)
    # Comparing the records themselves costs two derivations; needed only when a timestamp alone changed.
    return new, after if visible or (stamps and record(state) != after) else None


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
