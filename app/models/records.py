"""Our own records: internal topic values, table values and output records. Strict and versioned.

Shapes, by topic / table:
- the input topic, decoded (logic/decode.py):       NormalizedEvent
- table `cards` (key voucher id):                   CardAgg (CardState: the format before entry rows, read and converted)
- table `entries` (key voucher id NUL entry id):    EntryRecord (+ index keys voucher id SOH seq, see logic/cards)
- `pending-points-card-updates` (key customer id):  CardSummary
- table `customers` (key customer id):              CustomerState
- `customer-point-state` (key customer id):         CustomerPointState
- `pending-points-activations` (key entry id):      PendingPointsActivation
- `pending-points-entries` (key entry id):          PendingPointsEntry
- GET /vouchers/{id}:                               VoucherView
"""
from __future__ import annotations

import datetime as dt
from enum import Enum
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

SCHEMA_VERSION = 1


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Step(str, Enum):
    ADDED = "added"
    ACTIVATED = "activated"
    CANCELED = "canceled"
    UPDATED = "updated"


class Status(str, Enum):
    PENDING = "PENDING"
    ACTIVATED = "ACTIVATED"
    CANCELED = "CANCELED"


class Observation(_Strict):
    """What one delivery said about one pending entry."""

    points: int
    activates_at: dt.date | None = None
    created_at: dt.datetime | None = None
    updated_at: dt.datetime | None = None
    order_id: str | None = None
    campaign_id: str | None = None
    customer_id: str
    occurred_at: dt.datetime | None = None  # the event's own time (envelope), if known
    activated_at: dt.datetime | None = None  # activated only: best known activation time


class CardSnapshot(_Strict):
    """Voucherify's card snapshot (`voucher.loyalty_card`) as reported by one delivery."""

    points: int | None = None
    balance: int | None = None
    pending_points: int | None = None
    as_of: dt.datetime | None = None  # voucher.updated_at
    occurred_at: dt.datetime | None = None


class NormalizedEvent(_Strict):
    """A validated delivery, reduced to what the state needs (`pending-points-events` held these before cards read
    the input topic)."""

    v: Literal[1] = 1
    step: Step
    entry_id: str
    voucher_id: str
    customer_id: str
    campaign_id: str | None = None
    event_id: str | None = None
    observation: Observation
    card: CardSnapshot | None = None


class EntryState(_Strict):
    """One pending entry: per lifecycle step, the observation with the greatest ordering key.

    Every derived fact (status, points, join) is computed from these four, so merging is commutative,
    associative and idempotent: any permutation of deliveries, with duplicates, gives the same state.
    """

    id: str
    added: Observation | None = None
    updated: Observation | None = None
    activated: Observation | None = None
    canceled: Observation | None = None


class Owner(_Strict):
    customer_id: str
    campaign_id: str | None = None
    stamp: tuple[dt.datetime | None, dt.datetime | None, dt.datetime | None]


class CardState(_Strict):
    """Table `cards` as written before entry rows (one document per card with every entry it ever had). Still read:
    `logic.cards.upgrade` converts it on first touch."""

    voucher_id: str
    owner: Owner
    snapshot: CardSnapshot | None = None
    entries: dict[str, EntryState] = Field(default_factory=dict)
    version: int = 0  # bumped on every change; orders CardSummary records downstream
    last_offset: int = -1  # offset of the last `pending-points-events` record applied (replay detection)


class NextActivation(_Strict):
    date: dt.date
    points: int


# One live entry's contribution to its card's totals: (seq, status, points, activates_at, finished_at, checksum
# of the entry's state as absorbed).
Live = tuple[int, Status, int, dt.date | None, dt.datetime | None, int]


class CardAgg(_Strict):
    """Table `cards` (key voucher id): the card's owner, snapshot and totals, maintained incrementally.

    Its size does not depend on the card's history: `live` holds the contribution of each entry still PENDING or
    finished less than ENTRY_RETIRE_AFTER_H ago (event time); older finished entries are folded into the
    `retired_*` sums. The entries themselves are rows of the `entries` table.
    """

    v: Literal[2] = 2
    voucher_id: str
    owner: Owner
    former_owners: tuple[str, ...] = ()  # most recent last, bounded: removals re-published on a replay
    snapshot: CardSnapshot | None = None
    # Versions order CardSummary records downstream: `last_offset + 1 + input_offset + 1` at the last change
    # (`repair_upto` in place of `input_offset` after a repair).
    version: int = 0
    # Where the card reads its input (logic/cards.py, "where a card's input comes from"): `input` (the input topic,
    # since cards read it directly), or `events` (an aggregate written while cards read `pending-points-events`).
    source: Literal["events", "input"] = "events"
    # The last `pending-points-events` record absorbed (or an events-era repair's `repair_upto`, if higher): frozen
    # once the card reads the input, as the base of its versions.
    last_offset: int = -1
    input_offset: int = -1  # the last input topic record absorbed (replay detection)
    next_seq: int = 0  # entries counted so far; an entry row with seq < next_seq is counted (live or retired)
    live: dict[str, Live] = Field(default_factory=dict)
    retired_activated: int = 0
    retired_canceled: int = 0
    retired_entries: int = 0
    clock: dt.datetime | None = None  # newest event time seen on the card (drives retirement; `updated_at`)
    # Converted from a whole-card document (logic/cards.py, "the format before entry rows"): its entries' copies
    # (cards table, `voucher id STX seq`, seq < legacy_entries) are kept until the input up to `legacy_upto` is
    # committed; then deleted, and deleted again by any batch that starts at or before `legacy_cleaned_upto`.
    legacy_entries: int = 0
    legacy_upto: int | None = None
    legacy_cleaned_upto: int | None = None
    # Rows counted ahead of the input (logic/cards.py, `note_ahead`): the furthest input they hold. When the input is
    # read again up to there, the summary is published again with a version past it.
    repair_upto: int | None = None


class EntryRecord(_Strict):
    """Table `entries` (key voucher id NUL entry id): one pending entry's observations and its place on the card."""

    voucher_id: str
    seq: int  # order in which the card first counted it (-1: repaired after a crash, place unknown)
    entry: EntryState
    # the furthest `pending-points-events` record merged into it, before cards read the input: still parsed in
    # old rows, never written again
    offset: int | None = Field(None, exclude=True)
    input_offset: int | None = None  # the furthest input topic record merged into it (None: not recorded)


class CardView(_Strict):
    """The card snapshot as Voucherify reported it in the newest delivery."""

    points: int | None = None
    balance: int | None = None
    pending_points: int | None = None


class VoucherPoints(_Strict):
    voucher_id: str
    campaign_id: str | None
    pending_points: int
    activated_points: int
    canceled_points: int
    next_activation: NextActivation | None
    card: CardView | None


class CardSummary(_Strict):
    """Value of `pending-points-card-updates`: a card's totals, re-keyed to its owner customer."""

    v: Literal[1] = 1
    customer_id: str
    voucher_id: str
    version: int
    removed: bool = False  # the card moved to another customer
    points: VoucherPoints
    updated_at: dt.datetime | None


class CustomerState(_Strict):
    """Table `customers`: the latest summary of each card the customer holds."""

    customer_id: str
    cards: dict[str, CardSummary] = Field(default_factory=dict)
    last_offset: int = -1
    # The versions of the latest removals (card moved to another customer) of cards not held now, at most
    # MAX_REMOVALS (logic/customers.py): an older summary of such a card, arriving after its removal, is stale.
    removed: dict[str, int] = Field(default_factory=dict)


class CustomerPointState(_Strict):
    """Value of `customer-point-state` and of GET /customers/{customer_id}."""

    schema_version: Literal[1] = SCHEMA_VERSION
    customer_id: str
    pending_points: int
    activated_points: int
    canceled_points: int
    next_activation: NextActivation | None
    vouchers: dict[str, VoucherPoints]
    updated_at: dt.datetime | None


class PendingPointsActivation(_Strict):
    """Value of `pending-points-activations`: an entry's added and activated events, joined."""

    schema_version: Literal[1] = SCHEMA_VERSION
    pending_points_id: str
    voucher_id: str
    customer_id: str
    campaign_id: str | None
    order_id: str | None
    points: int
    added_at: dt.datetime | None
    activated_at: dt.datetime | None
    activates_at: dt.date | None
    activated_early: bool | None
    pending_seconds: float | None


class PendingPointsEntry(_Strict):
    """Value of `pending-points-entries`: an entry's current state, one record per change."""

    schema_version: Literal[1] = SCHEMA_VERSION
    pending_points_id: str
    status: Status
    points: int
    activates_at: dt.date | None
    voucher_id: str
    customer_id: str
    campaign_id: str | None
    order_id: str | None
    created_at: dt.datetime | None
    updated_at: dt.datetime | None
    activated_at: dt.datetime | None
    canceled_at: dt.datetime | None


class EntryView(_Strict):
    id: str
    status: Status
    points: int
    activates_at: dt.date | None
    order_id: str | None
    created_at: dt.datetime | None
    updated_at: dt.datetime | None
    activated_at: dt.datetime | None
    canceled_at: dt.datetime | None


class VoucherView(_Strict):
    """GET /vouchers/{voucher_id}."""

    schema_version: Literal[1] = SCHEMA_VERSION
    voucher_id: str
    customer_id: str
    campaign_id: str | None
    pending_points: int
    activated_points: int
    canceled_points: int
    next_activation: NextActivation | None
    card: CardView | None
    updated_at: dt.datetime | None
    entries_count: int  # every entry the card ever had
    entries: list[EntryView]  # one page, newest (most recently first seen) first
    next_after: str | None  # pass as ?after= for the next page; null on the last page
    drift: Drift | None = None  # Voucherify's pending total (newest delivery's card) against ours; None: unknown
    overdue: list[str] = Field(default_factory=list)  # PENDING entries past activates_at + OVERDUE_GRACE_H


class Drift(_Strict):
    """Voucherify's own pending total for the card, as its newest delivery carried it, against the one derived
    here. Expected to differ while deliveries are in flight (out of order, retried for up to 24 h); a difference
    that outlives Voucherify's retries (`settled`) means a delivery was lost."""

    voucherify_pending_points: int
    derived_pending_points: int
    difference: int  # Voucherify's minus ours
    as_of: dt.datetime | None  # when Voucherify's figure was true
    settled: bool  # as_of is older than Voucherify's 24 h of retries


class DeadLetterReason(_Strict):
    """Why a delivery was dead-lettered (the `dlq-reason` header carries `code: detail`)."""

    code: str
    detail: str

    def header(self) -> str:
        return f"{self.code}: {self.detail}"[:1000]
