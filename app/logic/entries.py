"""One pending entry: merge observations order-insensitively and derive status, points and the join."""
from __future__ import annotations

import datetime as dt
from zoneinfo import ZoneInfo

from app.models.records import EntryState, EntryView, Observation, PendingPointsActivation, Status, Step

MIN_TIME = dt.datetime.min.replace(tzinfo=dt.timezone.utc)


def after(key_a: tuple, key_b: tuple, a, b) -> bool:
    """Is `a` ordered after `b`? By their time keys, then by content, serialised only when the times tie (rare:
    the hot path compares timestamps only). The content tie-break makes the choice deterministic when timestamps
    are equal or absent, so merges do not depend on arrival order."""
    if key_a != key_b:
        return key_a > key_b
    return a is not b and a.model_dump_json() > b.model_dump_json()


def _time_key(obs: Observation) -> tuple:
    return (obs.updated_at or MIN_TIME, obs.created_at or MIN_TIME, obs.occurred_at or MIN_TIME)


def later(a: Observation, b: Observation) -> bool:
    """Total order on observations: latest `updated_at`, then `created_at`, then event time, then content."""
    return after(_time_key(a), _time_key(b), a, b)


def newest(*observations: Observation) -> Observation:
    """The greatest under `later` (the first of equals)."""
    best = observations[0]
    for obs in observations[1:]:
        if later(obs, best):
            best = obs
    return best


def _newer(current: Observation | None, candidate: Observation) -> Observation:
    if current is None or later(candidate, current):
        return candidate
    return current


def merge(entry: EntryState, step: Step, obs: Observation) -> EntryState:
    """Fold one observation into the entry. Commutative, associative and idempotent."""
    field = step.value
    current = getattr(entry, field)
    chosen = _newer(current, obs)
    if chosen is current:
        return entry
    return entry.model_copy(update={field: chosen})


def status(entry: EntryState) -> Status:
    # ACTIVATED and CANCELED are final; Voucherify only activates or cancels PENDING entries, so both should
    # never be seen. If they are, ACTIVATED wins, whatever order they arrived in.
    if entry.activated is not None:
        return Status.ACTIVATED
    if entry.canceled is not None:
        return Status.CANCELED
    return Status.PENDING


def _latest_pending(entry: EntryState) -> Observation | None:
    if entry.added is None:
        return entry.updated
    if entry.updated is None:
        return entry.added
    return newest(entry.added, entry.updated)


def descriptor(entry: EntryState) -> Observation:
    """The newest observation of any step: source of descriptive fields (order, campaign, activates_at)."""
    seen = [o for o in (entry.added, entry.updated, entry.activated, entry.canceled) if o is not None]
    return newest(*seen)


def points(entry: EntryState) -> int:
    """The amount in the final event if there is one, else the newest added/updated amount."""
    if entry.activated is not None:
        return entry.activated.points
    if entry.canceled is not None:
        return entry.canceled.points
    pending = _latest_pending(entry)
    return pending.points if pending is not None else 0


def activates_at(entry: EntryState) -> dt.date | None:
    pending = _latest_pending(entry)
    if pending is not None and pending.activates_at is not None:
        return pending.activates_at
    return descriptor(entry).activates_at


VIEW_FIELDS = ("id", "status", "points", "activates_at", "order_id", "created_at", "updated_at", "activated_at",
               "canceled_at")


def view_facts(entry: EntryState) -> tuple:
    """`view`'s values in VIEW_FIELDS order, plus the descriptor's customer and campaign: comparing two entries'
    facts tells whether their records differ, without building the models."""
    d = descriptor(entry)
    first = entry.added or entry.updated or d
    return (
        entry.id,
        status(entry),
        points(entry),
        activates_at(entry),
        d.order_id,
        first.created_at or d.created_at,
        d.updated_at,
        entry.activated.activated_at if entry.activated else None,
        (entry.canceled.updated_at or entry.canceled.occurred_at) if entry.canceled else None,
        d.customer_id,
        d.campaign_id,
    )


def view(entry: EntryState) -> EntryView:
    return EntryView(**dict(zip(VIEW_FIELDS, view_facts(entry))))


def activation(entry: EntryState, voucher_id: str, tz: ZoneInfo) -> PendingPointsActivation | None:
    """The join of the entry's added and activated events, once both are seen (in either order)."""
    if entry.added is None or entry.activated is None:
        return None
    added, act = entry.added, entry.activated
    added_at = added.created_at or added.occurred_at
    activated_at = act.activated_at
    due = act.activates_at or added.activates_at
    early = None
    if activated_at is not None and due is not None:
        early = activated_at.astimezone(tz).date() < due
    pending_seconds = None
    if activated_at is not None and added_at is not None:
        pending_seconds = (activated_at - added_at).total_seconds()
    return PendingPointsActivation(
        pending_points_id=entry.id,
        voucher_id=voucher_id,
        customer_id=act.customer_id,
        campaign_id=act.campaign_id or added.campaign_id,
        order_id=act.order_id or added.order_id,
        points=act.points,
        added_at=added_at,
        activated_at=activated_at,
        activates_at=due,
        activated_early=early,
        pending_seconds=pending_seconds,
    )
