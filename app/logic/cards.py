"""A loyalty card: fold a batch of its events into entry rows and an incrementally maintained card aggregate.

State is two tables, co-partitioned by voucher id:
- `entries`: one row per pending entry (`EntryRecord`: its observations and its sequence number on the card),
  key `voucher id NUL entry id`, plus one index key per entry, `voucher id SOH ~seq entry id`, for listing a card's
  entries newest first. A row costs the same whether the card has ten entries or ten thousand.
- `cards`: the card aggregate (`CardAgg`): owner, snapshot, and totals. It holds each *live* entry's contribution
  (seq, status, points, due date, finish time) and only sums for entries finished longer than the retirement
  horizon ago, so its size is bounded by what is pending or recent, never by history.

Why no subset of a batch's writes can lose or double count (the broker has no transactions, and the two
tables' changelogs are written independently):
- The aggregate is the only source of totals, and it absorbs each input record at most once: a record at or below
  `input_offset` was absorbed before a crash, so reprocessing it only repairs the entry row (an idempotent merge,
  written again so the changelog surely has it); the aggregate is not touched.
- A record above `input_offset` is absorbed relative to what the aggregate itself holds, never to what the entry
  row says it was: a live entry's old contribution is the one stored in `live`. An entry the aggregate does not
  hold live is either retired (its row has `seq < next_seq`: the aggregate counted it and its part of the sums is
  final; a change to it, which Voucherify does not make to a finished entry, updates the row and the outputs but
  not the totals, since the row may already hold a change whose aggregate write was lost) or new to the aggregate
  (no row, or a row written by a batch whose aggregate write was lost: its `seq >= next_seq`), and is counted now.
- Reprocessing the same input in the same order gives the same sequence numbers and versions (`version` is the
  last absorbed offset + 1, above a base, below), so a summary downstream is ordered the same way whichever writes survived.
- Except where a replay counts a row written ahead of it (the row holds input the replay has not read again yet,
  `EntryRecord.input_offset`): from there until the input is read again that far, its totals include later input, and
  its summaries may rank below one the lost batch published (the customers stage keeps the highest version). So
  the card remembers how far those rows had come (`repair_upto`), and when the input is read again up to there
  (its totals then are those the lost run had at that point) the version moves past it and the summary is
  published again, outranking anything the lost run published up to there.

Where a card's input comes from: every record a card absorbs comes from one partition of the input topic, so
"offset" above is an input topic offset. A delivery on its card's partition (the one its voucher id is keyed to:
always so for one keyed by it, what the webhook endpoint and a backfill write) is absorbed where it is; any other
delivery is first written again to the input topic keyed by its voucher id, and absorbed when that copy is read
(app/agents/cards.py). One
source per card keeps the replay rule and the versions above exact: with two (the input and a re-key topic),
how they interleave after a restart would decide sequence numbers and versions.
Aggregates written before this, when cards read `pending-points-events` (`source: events`), keep their count of
absorbed events records (`last_offset`, frozen) as the base of their versions, so versions keep growing; their
repairs and their conversion copies belonged to that topic, which is drained before the upgrade
(docs/operations.md), so both end at the card's first input batch.
"""
from __future__ import annotations

import datetime as dt
import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from zoneinfo import ZoneInfo

from app.logic import entries
from app.models.records import (
    CardAgg,
    CardState,
    CardSummary,
    CardView,
    Drift,
    EntryRecord,
    EntryState,
    Live,
    NextActivation,
    NormalizedEvent,
    Owner,
    PendingPointsActivation,
    PendingPointsEntry,
    Status,
    VoucherPoints,
    VoucherView,
)

MAX_FORMER_OWNERS = 8
ENTRY_SEP = b"\x00"  # entries table: voucher id NUL entry id -> EntryRecord
INDEX_SEP = b"\x01"  # entries table: voucher id SOH (2^63 - 1 - seq, 8 bytes) entry id -> b"" (newest first)
LEGACY_SEP = b"\x02"  # cards table: voucher id STX seq (8 bytes) -> an entry as converted from a whole-card document
_SEQ_TOP = (1 << 63) - 1

RowLoader = Callable[[str], "EntryRecord | None"]


def entry_key(voucher_id: str, entry_id: str) -> bytes:
    return voucher_id.encode() + ENTRY_SEP + entry_id.encode()


def legacy_key(voucher_id: str, seq: int) -> bytes:
    return voucher_id.encode() + LEGACY_SEP + seq.to_bytes(8, "big")


def index_prefix(voucher_id: str) -> bytes:
    return voucher_id.encode() + INDEX_SEP


def index_key(voucher_id: str, seq: int, entry_id: str) -> bytes:
    return index_prefix(voucher_id) + (_SEQ_TOP - seq).to_bytes(8, "big") + entry_id.encode()


def parse_index_key(voucher_id: str, key: bytes) -> tuple[int, str]:
    rest = key[len(index_prefix(voucher_id)):]
    return _SEQ_TOP - int.from_bytes(rest[:8], "big"), rest[8:].decode()


@dataclass(slots=True)
class CardOutputs:
    summaries: list[CardSummary] = field(default_factory=list)  # -> the customers (agents/customers.py)
    activations: list[PendingPointsActivation] = field(default_factory=list)  # -> pending-points-activations
    entries: list[PendingPointsEntry] = field(default_factory=list)  # -> pending-points-entries
    replay: bool = False  # some records were absorbed before a crash: rewrite state, re-publish outputs
    frozen: int = 0  # changes to retired entries' points or status, not counted in the totals (see apply_batch)


@dataclass(slots=True)
class CardResult:
    card: CardAgg
    rows: dict[str, EntryRecord]  # entry rows to write (changed, or repaired on a replay), in arrival order
    indexed: list[str]  # of those, the ones whose index key must be written too (new place, or a replay)
    outputs: CardOutputs
    changed: bool  # the aggregate must be written (it changed, or a replay rewrites it)


# --- contributions -------------------------------------------------------------------------------------------


def _finished_at(entry: EntryState) -> dt.datetime | None:
    final = entry.activated or entry.canceled
    if final is None:
        return None
    stamps = [t for t in (final.activated_at, final.updated_at, final.occurred_at, final.created_at) if t]
    return max(stamps) if stamps else None


def contribution(seq: int, entry: EntryState) -> Live:
    """What the aggregate holds for a live entry. The last item, a checksum of the entry's state, tells whether a
    row read later is the one the aggregate absorbed (or one written by a batch whose aggregate write was lost)."""
    st = entries.status(entry)
    due = entries.activates_at(entry) if st is Status.PENDING else None
    return (seq, st, entries.points(entry), due, _finished_at(entry), _crc(entry))


def _crc(entry: EntryState) -> int:
    return zlib.crc32(entry.__pydantic_serializer__.to_json(entry))  # the bytes of model_dump_json()


def _event_stamps(event: NormalizedEvent) -> list[dt.datetime]:
    o = event.observation
    stamps = [t for t in (o.occurred_at, o.updated_at, o.created_at, o.activated_at) if t is not None]
    if event.card is not None:
        stamps += [t for t in (event.card.as_of, event.card.occurred_at) if t is not None]
    return stamps


def _owner_stamp(event: NormalizedEvent) -> tuple:
    obs = event.observation
    return (event.card.as_of if event.card else None, obs.occurred_at, obs.updated_at or obs.created_at)


def _owner_of(event: NormalizedEvent) -> Owner:
    return Owner(customer_id=event.customer_id, campaign_id=event.campaign_id, stamp=_owner_stamp(event))


def _ranking(stamp: tuple, customer_id: str, campaign_id: str | None) -> tuple:
    low = entries.MIN_TIME
    return ((stamp[0] or low, stamp[1] or low, stamp[2] or low), customer_id, campaign_id or "")


def _owner_key(owner: Owner) -> tuple:
    return _ranking(owner.stamp, owner.customer_id, owner.campaign_id)


def _snapshot_newer(a, b) -> bool:
    """Order of card snapshots: newer `as_of`, then event time, then content."""
    low = entries.MIN_TIME
    return entries.after((a.as_of or low, a.occurred_at or low), (b.as_of or low, b.occurred_at or low), a, b)


class _Card:
    """A mutable working copy of a CardAgg for the length of one batch."""

    __slots__ = ("voucher_id", "owner", "former", "snapshot", "version", "base", "input_offset", "next_seq", "live",
                 "retired", "clock", "legacy", "owner_changed", "repair_upto", "owner_key")

    def __init__(self, agg: CardAgg):
        self.voucher_id = agg.voucher_id
        self.owner = agg.owner
        self.former = list(agg.former_owners)
        self.snapshot = agg.snapshot
        self.version = agg.version
        # Offsets below are the input topic's. `base` counts the `pending-points-events` records absorbed before
        # the card read the input ("where a card's input comes from"): versions continue above it, and above an
        # events-era repair still pending (its version would have gone up to repair_upto + 1).
        reads_input = agg.source == "input"
        self.base = agg.last_offset + 1 if reads_input else max(
            agg.last_offset, agg.repair_upto if agg.repair_upto is not None else -1) + 1
        self.input_offset = agg.input_offset if reads_input else -1
        self.next_seq = agg.next_seq
        self.live = dict(agg.live)
        self.retired = [agg.retired_activated, agg.retired_canceled, agg.retired_entries]
        self.clock = agg.clock
        self.legacy = (agg.legacy_entries, agg.legacy_upto, agg.legacy_cleaned_upto)
        self.owner_changed = False
        self.owner_key: tuple | None = None  # the owner's ranking, computed when first needed
        self.repair_upto = agg.repair_upto if reads_input else None  # the events' repairs ended with their drain

    def freeze(self) -> CardAgg:
        return CardAgg(voucher_id=self.voucher_id, owner=self.owner, former_owners=tuple(self.former),
                       snapshot=self.snapshot, version=self.version, source="input",
                       last_offset=self.base - 1, input_offset=self.input_offset,
                       next_seq=self.next_seq, live=self.live, retired_activated=self.retired[0],
                       retired_canceled=self.retired[1], retired_entries=self.retired[2], clock=self.clock,
                       legacy_entries=self.legacy[0], legacy_upto=self.legacy[1],
                       legacy_cleaned_upto=self.legacy[2], repair_upto=self.repair_upto)

    def absorb_card_facts(self, event: NormalizedEvent) -> bool:
        """Owner, snapshot and clock from one event; True if anything changed."""
        changed = False
        stamp = _owner_stamp(event)
        if self.owner_key is None:
            self.owner_key = _owner_key(self.owner)
        if (key := _ranking(stamp, event.customer_id, event.campaign_id)) > self.owner_key:
            owner = Owner(customer_id=event.customer_id, campaign_id=event.campaign_id, stamp=stamp)
            self.owner_key = key
            if owner.customer_id != self.owner.customer_id:
                self.former = [c for c in self.former if c not in (self.owner.customer_id, owner.customer_id)]
                self.former = (self.former + [self.owner.customer_id])[-MAX_FORMER_OWNERS:]
            self.owner_changed = self.owner_changed or owner.customer_id != self.owner.customer_id
            self.owner = owner
            changed = True
        if event.card is not None and (self.snapshot is None or _snapshot_newer(event.card, self.snapshot)):
            self.snapshot = event.card
            changed = True
        stamps = _event_stamps(event)
        if stamps:
            newest = max(stamps)
            if self.clock is None or newest > self.clock:
                self.clock = newest
                changed = True
        return changed

    def note_ahead(self, row: EntryRecord | None, offset: int) -> None:
        """A row counted now holds input past `offset` (written by a batch whose aggregate write was lost): until
        the input is read again up to there, this card's totals include changes from further on."""
        if row is not None and row.input_offset is not None and row.input_offset > offset:
            self.repair_upto = max(self.repair_upto if self.repair_upto is not None else -1, row.input_offset)

    def repair_done(self, last_offset: int) -> bool:
        """After a batch read up to `last_offset`: once the input is read again as far as rows counted ahead of it
        had come, the card's totals are what a run without the crash had at that point, and the lost batch may
        have published a summary with a version up to `base + repair_upto + 1` that this replay's earlier ones do not
        outrank: the version moves there and the summary is published again (True)."""
        if self.repair_upto is None or last_offset < self.repair_upto:
            return False
        self.version = max(self.version, self.base + self.repair_upto + 1)
        self.repair_upto = None
        # The batch's records are all absorbed (those that changed nothing too): a replay of them after a crash
        # that lost this write but kept the local one is then a replay, which writes the card and its summary again.
        self.input_offset = max(self.input_offset, last_offset)
        return True

    def retire(self, horizon: dt.timedelta) -> bool:
        """Fold finished entries older than the horizon (by the card's event-time clock) into the retired sums."""
        if self.clock is None:
            return False
        cutoff = self.clock - horizon
        old = [eid for eid, c in self.live.items()
               if c[1] is not Status.PENDING and c[4] is not None and c[4] < cutoff]
        for eid in old:
            self._add_retired(self.live.pop(eid), +1)
        return bool(old)

    def _add_retired(self, c: Live, sign: int) -> None:
        if c[1] is Status.ACTIVATED:
            self.retired[0] += sign * c[2]
        elif c[1] is Status.CANCELED:
            self.retired[1] += sign * c[2]
        self.retired[2] += sign


def _merged_upto(row: EntryRecord | None, offset: int) -> int:
    """A row's `offset` after merging the input record at `offset` into it."""
    return offset if row is None or row.input_offset is None else max(row.input_offset, offset)


def _new_card(event: NormalizedEvent) -> CardAgg:
    return CardAgg(voucher_id=event.voucher_id, owner=_owner_of(event), source="input")


# --- the fold ------------------------------------------------------------------------------------------------


def apply(card: CardAgg | None, event: NormalizedEvent, offset: int, rows: RowLoader, tz: ZoneInfo,
          retire_after: dt.timedelta) -> CardResult:
    """Fold one event into the card (a batch of one)."""
    return apply_batch(card, [(event, offset)], rows, tz, retire_after)


def apply_batch(card: CardAgg | None, items: Sequence[tuple[NormalizedEvent, int]], rows: RowLoader, tz: ZoneInfo,
                retire_after: dt.timedelta) -> CardResult:
    """Fold this card's events, in offset order; return the new aggregate, the entry rows to write and the outputs.

    `rows(entry_id)` reads an entry row (None if absent); each is read at most once per batch. Outputs are derived
    once per batch from the state before and after it: one summary per card, one join and one entry record per
    changed entry. On a replay (records the aggregate absorbed before a crash) the current outputs of the card and
    of the replayed entries are published again, and their state written again.
    """
    if not items:
        raise ValueError("apply_batch needs at least one event")
    work = _Card(card if card is not None else _new_card(items[0][0]))
    first_offset = work.input_offset  # the input the aggregate had absorbed before this batch
    before: dict[str, EntryRecord | None] = {}  # rows as they were before the batch
    now: dict[str, EntryRecord | None] = {}
    touched: dict[str, bool] = {}  # entry id -> outputs to publish again (ordered: outputs follow arrival order)
    dirty: dict[str, None] = {}
    replay = changed = False
    outputs_frozen = 0
    for event, offset in items:
        eid = event.entry_id
        if eid not in now:
            before[eid] = now[eid] = rows(eid)
        row = now[eid]
        state = row.entry if row is not None else EntryState(id=eid)
        merged = entries.merge(state, event.step, event.observation)
        if offset <= first_offset:  # absorbed by the aggregate before a crash: repair the row, count nothing
            replay = True
            touched[eid] = True
            seq = row.seq if row is not None else (work.live[eid][0] if eid in work.live else -1)
            now[eid] = EntryRecord(voucher_id=work.voucher_id, seq=seq, entry=merged,
                                   input_offset=_merged_upto(row, offset))
            dirty[eid] = None
            continue
        this = work.absorb_card_facts(event)
        live = work.live.get(eid)
        # `ahead`: the row holds changes the aggregate never absorbed (its write was lost in a crash), so this
        # entry's outputs may have been lost with it: they are published again.
        counted = True  # the aggregate counts this entry's changes (not a retired one)
        if live is not None:
            seq = live[0]
            ahead = row is not None and live[5] != _crc(state)
            # a duplicate of what the aggregate holds leaves its contribution as it is
            new_c = live if merged is state and row is not None and not ahead else contribution(seq, merged)
            if new_c != live:
                work.live[eid] = new_c
                this = True
        elif row is not None and row.seq < work.next_seq:  # retired: its part of the sums is final
            # The row may already hold a change whose aggregate write was lost, so a delta against it could
            # count twice or never: a retired entry's totals are frozen. Its row and its outputs still follow.
            seq = row.seq
            counted = False
            ahead = merged is state  # a late duplicate: cheap to answer with the current outputs
            if merged is not state and contribution(seq, merged)[:3] != contribution(seq, state)[:3]:
                outputs_frozen += 1
        else:  # new to the aggregate
            seq = work.next_seq
            ahead = row is not None
            work.next_seq += 1
            work.live[eid] = contribution(seq, merged)
            this = True
        if ahead:
            touched[eid] = True
            if counted:
                work.note_ahead(row, offset)
        if row is None or merged is not state or row.seq != seq or ahead:  # ahead: the row may be only local
            now[eid] = EntryRecord(voucher_id=work.voucher_id, seq=seq, entry=merged,
                                   input_offset=_merged_upto(row, offset))
            dirty[eid] = None
            this = True
        if this:
            changed = True
            work.input_offset = offset
            work.version = work.base + offset + 1
        touched.setdefault(eid, False)
    republish = work.repair_done(items[-1][1])
    changed = changed or republish
    if changed:
        work.retire(retire_after)
    new = work.freeze() if (changed or card is None) else card

    outputs = CardOutputs(replay=replay, frozen=outputs_frozen)
    new_facts = _facts(new)
    if card is None or replay:
        outputs.summaries += [_removed(new, new_facts, c) for c in new.former_owners if c != new.owner.customer_id]
        outputs.summaries.append(_summary(new, new_facts))
    elif changed:
        old_facts = _facts(card)
        if work.owner_changed:  # changed hands: every previous owner stops counting it. All of them, not only
            # the one before this batch: a replay cut into other batches may have published another in between.
            outputs.summaries += [_removed(new, new_facts, c) for c in new.former_owners
                                  if c != new.owner.customer_id]
        if old_facts != new_facts or republish:
            outputs.summaries.append(_summary(new, new_facts))

    for eid, replayed in touched.items():
        after_row, before_row = now[eid], before[eid]
        if after_row is None:
            continue
        if not replayed and before_row is not None and before_row.entry is after_row.entry \
                and before_row.voucher_id == after_row.voucher_id:
            continue  # the same entry state: the same join and entry record as before
        new_act = entries.activation(after_row.entry, new.voucher_id, tz)
        if new_act is not None and (replayed or before_row is None
                                    or new_act != entries.activation(before_row.entry, new.voucher_id, tz)):
            outputs.activations.append(new_act)
        new_facts = entries.view_facts(after_row.entry)
        if replayed or before_row is None or before_row.voucher_id != after_row.voucher_id \
                or new_facts != entries.view_facts(before_row.entry):
            outputs.entries.append(_entry_record(after_row.voucher_id, new_facts))
    rows_out = {eid: now[eid] for eid in dirty}
    indexed = [eid for eid in dirty if touched[eid] or before[eid] is None or before[eid].seq != now[eid].seq]
    return CardResult(card=new, rows=rows_out, indexed=indexed, outputs=outputs, changed=changed or replay)


# --- derived facts -------------------------------------------------------------------------------------------


def _totals(card: CardAgg) -> tuple[int, int, int, tuple[dt.date, int] | None]:
    pending, activated, canceled = 0, card.retired_activated, card.retired_canceled
    due: dict[dt.date, int] = {}
    for _seq, st, pts, day, _fin, _crc in card.live.values():
        if st is Status.PENDING:
            pending += pts
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


def _facts(card: CardAgg) -> tuple:
    """Everything a card's summary says except its version, as plain values: comparing two cards' facts is
    how a batch decides whether to publish, without building the models."""
    s = card.snapshot
    snapshot = (s.points, s.balance, s.pending_points) if s is not None else None
    return (card.owner.customer_id, card.owner.campaign_id, _totals(card), snapshot, card.clock)


def _voucher_points(card: CardAgg, facts: tuple) -> VoucherPoints:
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


def _summary(card: CardAgg, facts: tuple) -> CardSummary:
    return CardSummary(customer_id=facts[0], voucher_id=card.voucher_id, version=card.version,
                       points=_voucher_points(card, facts), updated_at=facts[4])


def _removed(card: CardAgg, facts: tuple, customer_id: str) -> CardSummary:
    return _summary(card, facts).model_copy(update={"customer_id": customer_id, "removed": True})


def voucher_points(card: CardAgg) -> VoucherPoints:
    return _voucher_points(card, _facts(card))


def summary(card: CardAgg) -> CardSummary:
    return _summary(card, _facts(card))


def _entry_record(voucher_id: str, facts: tuple) -> PendingPointsEntry:
    """The `pending-points-entries` record of an entry of `voucher_id`, from its `entries.view_facts`."""
    eid, st, pts, due, order_id, created, updated, activated, canceled, customer_id, campaign_id = facts
    return PendingPointsEntry(
        pending_points_id=eid, status=st, points=pts, activates_at=due, voucher_id=voucher_id,
        customer_id=customer_id, campaign_id=campaign_id, order_id=order_id, created_at=created, updated_at=updated,
        activated_at=activated, canceled_at=canceled,
    )


RETRY_WINDOW = dt.timedelta(hours=24)  # Voucherify retries a failed delivery for up to 24 h


def drift(card: CardAgg, now: dt.datetime, ours: int | None = None) -> Drift | None:
    """Voucherify's pending total (from the newest delivery's card snapshot) against the derived one (`ours`,
    computed here if not given)."""
    s = card.snapshot
    if s is None or s.pending_points is None:
        return None
    ours = _totals(card)[0] if ours is None else ours
    as_of = s.as_of or s.occurred_at
    return Drift(voucherify_pending_points=s.pending_points, derived_pending_points=ours,
                 difference=s.pending_points - ours, as_of=as_of,
                 settled=as_of is not None and now - as_of > RETRY_WINDOW)


def overdue(card: CardAgg, now: dt.datetime, tz: ZoneInfo, grace: dt.timedelta) -> list[str]:
    """PENDING entries whose activation (00:00 of `activates_at`, project time) is more than `grace` ago: their
    activation delivery was most likely lost (or the activation job is late)."""
    out = []
    for eid, (_seq, st, _pts, due, _fin, _crc) in card.live.items():
        if st is Status.PENDING and due is not None:
            activates = dt.datetime.combine(due, dt.time(0), tzinfo=tz)
            if now - activates > grace:
                out.append(eid)
    return sorted(out)


def view(card: CardAgg, page: Sequence[EntryRecord], next_after: str | None, *, now: dt.datetime | None = None,
         tz: ZoneInfo | None = None, grace: dt.timedelta | None = None) -> VoucherView:
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
        updated_at=card.clock,
        entries_count=card.next_seq,
        entries=[entries.view(r.entry) for r in page],
        next_after=next_after,
        drift=drift(card, now, vp.pending_points) if now is not None else None,
        overdue=overdue(card, now, tz, grace) if now is not None and tz is not None and grace is not None else [],
    )


# --- the format before entry rows ----------------------------------------------------------------------------
#
# Converting a card writes all its entry rows (entries changelog) and the aggregate (cards changelog) in one
# batch: a crash may keep the aggregate and lose rows, and nothing in the aggregate could rebuild them. So each
# converted entry is first copied into the cards table under `voucher id STX seq` (same changelog partition as
# the aggregate, written before it: if the aggregate survived, so did the copies; each copy is one entry's size,
# so a card whose document was too large for one record converts fine), and the aggregate records how many
# (`legacy_entries`) and `legacy_upto`, the last input offset of that batch. A batch that starts at or below it
# may follow a crash that lost rows: the converted rows are written again (the local row, or the copy where it
# is missing), and so are the copies, like everything a replay writes. Once the input past `legacy_upto` is committed, the
# conversion's writes are all on the broker (Faust flushes before it commits): the copies are deleted, and
# deleted again (blind deletes, by seq) by any batch that starts at or before the one that deleted them.


def upgrade(old: CardState, retire_after: dt.timedelta) -> tuple[CardAgg, dict[str, EntryRecord]]:
    """Convert a whole-card document (the format before entry rows) into an aggregate and its entry rows.

    Sequence numbers follow the entries' creation time (then id); the version and last offset are kept, so replay
    detection and the order of summaries downstream carry on (later versions are offsets + 1, always greater).
    """
    def first_seen(e: EntryState) -> tuple:
        o = e.added or e.updated or entries.descriptor(e)
        return (o.created_at or o.occurred_at or entries.MIN_TIME, e.id)

    ordered = sorted(old.entries.values(), key=first_seen)
    rows = {e.id: EntryRecord(voucher_id=old.voucher_id, seq=i, entry=e) for i, e in enumerate(ordered)}
    stamps = [t for t in old.owner.stamp if t is not None]
    if old.snapshot is not None:
        stamps += [t for t in (old.snapshot.as_of, old.snapshot.occurred_at) if t is not None]
    for e in ordered:
        for o in (e.added, e.updated, e.activated, e.canceled):
            if o is not None:
                stamps += [t for t in (o.occurred_at, o.updated_at, o.created_at, o.activated_at) if t]
    agg = CardAgg(voucher_id=old.voucher_id, owner=old.owner, snapshot=old.snapshot, version=old.version,
                  source="input", last_offset=old.last_offset, next_seq=len(ordered),
                  live={r.entry.id: contribution(r.seq, r.entry) for r in rows.values()},
                  clock=max(stamps) if stamps else None)
    work = _Card(agg)
    work.retire(retire_after)
    return work.freeze(), rows


def is_legacy(raw: bytes) -> bool:
    return not raw.startswith(b'{"v":2')


def load(raw: bytes, retire_after: dt.timedelta) -> tuple[CardAgg, dict[str, EntryRecord]]:
    """A `cards` table value: the aggregate, plus the entry rows still to write if it was in the old format."""
    from app.models import codec

    if not is_legacy(raw):
        return codec.load(CardAgg, raw), {}
    return upgrade(codec.load(CardState, raw), retire_after)


@dataclass(slots=True)
class Plan:
    """Everything one batch of one card writes, in the order it must be written (after its outputs)."""

    side_puts: dict[int, EntryRecord]  # cards table, legacy_key by seq: copies of converted entries (first)
    side_deletes: list[int]  # cards table, legacy_key by seq: copies no longer needed
    rows: list[tuple[EntryRecord, bool]]  # entries table: (row, write its index key too)
    card: CardAgg | None  # cards table, voucher id: the aggregate (last), None if unchanged
    outputs: CardOutputs
    kind: str  # "changed", "replay" or "unchanged" (metrics)


def plan_batch(raw: bytes | None, items: Sequence[tuple[NormalizedEvent, int]], rows: RowLoader,
               side_row: Callable[[int], EntryRecord | None], committed: int | None, tz: ZoneInfo,
               retire_after: dt.timedelta) -> Plan:
    """One card's batch from its `cards` value as stored (`raw`), in any format. `rows(entry_id)` reads an entry
    row, `side_row(seq)` a converted entry's copy, `committed` is the input partition's committed offset (None if
    unknown)."""
    first, last = items[0][1], items[-1][1]
    card, upgraded = load(raw, retire_after) if raw is not None else (None, {})
    side_puts: dict[int, EntryRecord] = {}
    side_deletes: list[int] = []
    n, upto, cleaned = (card.legacy_entries, card.legacy_upto, card.legacy_cleaned_upto) if card is not None \
        else (0, None, None)
    if upgraded:  # converted now
        side_puts = {r.seq: r for r in upgraded.values()}
        n, upto, cleaned = len(upgraded), last, None
    elif card is not None and card.source == "events":  # written before cards read the input
        if upto is not None:  # the conversion's input (pending-points-events) was drained: drop the copies
            side_deletes, upto, cleaned = list(range(n)), None, last
        else:
            cleaned = None
    elif upto is not None:
        if first <= upto:  # may follow a crash that lost the conversion's rows
            side_puts = {seq: r for seq in range(n) if (r := side_row(seq)) is not None}
            # every converted row is written again: the local one if any (it may exist only locally), else the copy
            upgraded = {r.entry.id: rows(r.entry.id) or r for r in side_puts.values()}
            upto = max(upto, last)
        elif committed is not None and committed > upto:  # the conversion is on the broker: drop the copies
            side_deletes, upto, cleaned = list(range(n)), None, last
    elif cleaned is not None and first <= cleaned:  # a replay of the batch that dropped them: drop them again
        side_deletes, cleaned = list(range(n)), max(cleaned, last)
    res = apply_batch(card, items, lambda eid: upgraded.get(eid) or rows(eid), tz, retire_after)
    out_rows = [(rec, True) for eid, rec in upgraded.items() if eid not in res.rows]
    out_rows += [(rec, eid in res.indexed or eid in upgraded) for eid, rec in res.rows.items()]
    new = res.card
    if (new.legacy_entries, new.legacy_upto, new.legacy_cleaned_upto) != (n, upto, cleaned):
        if new.source == "events":  # unchanged by the batch: switched to the input as apply_batch switches a card
            new = _Card(new).freeze()
        new = new.model_copy(update={"legacy_entries": n, "legacy_upto": upto, "legacy_cleaned_upto": cleaned})
    write = res.changed or bool(upgraded) or bool(side_deletes) or new is not res.card  # with its side writes
    kind = "replay" if res.outputs.replay else "changed" if write else "unchanged"
    return Plan(side_puts, side_deletes, out_rows, new if write else None, res.outputs, kind)
