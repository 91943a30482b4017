"""Property: a crash may drop any subset of a batch's state writes (entry rows, card aggregate: two changelogs, no
transactions) and of its output records; the input is then read again from the last commit. Whatever was dropped,
and whether the worker kept its local state or restored from the changelogs, nothing is lost or counted twice,
also when cards move between customers."""
from __future__ import annotations

import datetime as dt
import json

from hypothesis import given, settings
from hypothesis import strategies as st

from app.logic import cards, customers, entries
from app.models import codec
from app.models.records import CardState, EntryRecord, EntryState, NormalizedEvent
from tests.unit.test_properties import CUSTOMERS, T0, to_event

H72 = dt.timedelta(hours=72)


@st.composite
def moving_lifecycle(draw, n: int):
    """One entry's events; its customer is drawn on its own, so a card's entries (and owner) move between
    customers: the card belongs to the customer of its newest delivery."""
    voucher = draw(st.sampled_from(("v1", "v2", "v3")))
    customer = draw(st.sampled_from(CUSTOMERS))
    activates = T0.date() + dt.timedelta(days=draw(st.integers(1, 5)))
    minutes = sorted(draw(st.lists(st.integers(1, 10_000), max_size=2, unique=True)))
    events = [("added", draw(st.integers(0, 1000)), None)]
    events += [("updated", draw(st.integers(0, 1000)), m) for m in minutes]
    final = draw(st.sampled_from((None, "activated", "canceled")))
    if final:  # far apart in event time, so some entries retire (horizon 72 h) while others are fed
        events.append((final, draw(st.integers(0, 1000)), draw(st.sampled_from((20_000, 30_000, 90_000)))))
    return f"lopp_{n}", voucher, customer, activates, events


def reference(lifecycles) -> dict[str, tuple[int, int, int]]:
    """Per customer: (pending, activated, canceled) of the cards they own, straight from the definitions."""
    per_card: dict[str, list[int]] = {}
    owner_key: dict[str, tuple] = {}
    for _entry, voucher, customer, _activates, events in lifecycles:
        finals = [e for e in events if e[0] in ("activated", "canceled")]
        if finals:
            status, points = finals[0][0], finals[0][1]
        else:
            status, points = "pending", max(events, key=lambda e: -1 if e[2] is None else e[2])[1]
        sums = per_card.setdefault(voucher, [0, 0, 0])
        sums[("pending", "activated", "canceled").index(status)] += points
        for _step, _points, minutes in events:
            owner_key[voucher] = max(owner_key.get(voucher, (-1, "")), (minutes or 0, customer))
    out: dict[str, list[int]] = {}
    for voucher, sums in per_card.items():
        acc = out.setdefault(owner_key[voucher][1], [0, 0, 0])
        for i in range(3):
            acc[i] += sums[i]
    return {c: tuple(v) for c, v in out.items() if c}


class CrashingWorker:
    """The card and customer stages with two copies of the card stage's state: local (RocksDB, every write) and
    durable (the changelogs, only the writes that reached the broker).

    `here` (per run): the worker folds the summaries itself, right after the cards (agents/customers.py,
    `fold_here`: no offset), and the customers' state writes and records may be lost in the crash too. Else they
    go through pending-points-card-updates (a summary may be lost) to the customers stage of the worker holding
    the customer (it restored the durable state), which does not crash here. A batch folded in place and lost in
    a crash may be read again after a rebalance that sends its summaries through the topic, and the other way."""

    def __init__(self):
        self.local_cards: dict = {}
        self.local_rows: dict = {}
        self.cards: dict = {}  # durable
        self.rows: dict = {}
        self.local_customers: dict = {}
        self.customers: dict = {}  # durable
        self.records: dict = {}
        self.summary_offset = 0

    def run(self, items: list[tuple[NormalizedEvent, int]], keep, here: bool = False) -> None:
        """One batch; `keep(what)` says whether a write or output reached the broker (all of them, without a crash)."""
        by_card: dict[str, list] = {}
        for ev, offset in items:
            by_card.setdefault(ev.voucher_id, []).append((ev, offset))
        summaries = []
        for voucher, group in by_card.items():
            res = cards.apply_batch(self.local_cards.get(voucher), group,
                                    lambda eid, v=voucher: self.local_rows.get((v, eid)), dt.timezone.utc, H72)
            for eid, row in res.rows.items():
                self.local_rows[(voucher, eid)] = row
                if keep(("row", eid)):
                    self.rows[(voucher, eid)] = row
            if res.changed:
                self.local_cards[voucher] = res.card
                if keep(("card", voucher)):
                    self.cards[voucher] = res.card
            summaries += [s for s in res.outputs.summaries if here or keep(("summary", s.customer_id))]
        by_customer: dict[str, list] = {}
        for s in summaries:
            self.summary_offset += 1
            by_customer.setdefault(s.customer_id, []).append((s, None if here else self.summary_offset))
        for customer_id, group in by_customer.items():
            if not here:  # the customers stage, which does not crash here
                state, record = customers.apply_batch(self.customers.get(customer_id), group)
                self.customers[customer_id] = self.local_customers[customer_id] = state
                if record is not None:
                    self.records[customer_id] = json.loads(codec.dump(record))
                continue
            state, record = customers.apply_batch(self.local_customers.get(customer_id), group)
            self.local_customers[customer_id] = state
            if keep(("customer", customer_id)):
                self.customers[customer_id] = state
            if record is not None and keep(("record", customer_id)):
                self.records[customer_id] = json.loads(codec.dump(record))

    def restart(self, state_kept: bool) -> None:
        if not state_kept:  # empty state dir: restored from the changelogs
            self.local_cards, self.local_rows = dict(self.cards), dict(self.rows)
            self.local_customers = dict(self.customers)


@settings(max_examples=300, deadline=None)
@given(data=st.data())
def test_any_subset_of_a_batchs_writes_lost_in_a_crash_then_replayed_loses_nothing_and_counts_nothing_twice(data):
    lifecycles = [data.draw(moving_lifecycle(n)) for n in range(data.draw(st.integers(1, 7)))]
    deliveries = [(lc, ev) for lc in lifecycles for ev in lc[4]]
    order = data.draw(st.permutations(deliveries + data.draw(st.lists(st.sampled_from(deliveries), max_size=4))))
    events = [to_event(entry, voucher, customer, activates, step, points, minutes)
              for (entry, voucher, customer, activates, _), (step, points, minutes) in order]
    items = list(enumerate(events))
    size = data.draw(st.integers(1, 5), label="batch size")
    batches = [[(ev, off) for off, ev in items[i:i + size]] for i in range(0, len(items), size)]

    w = CrashingWorker()
    here = data.draw(st.sampled_from((True, False, None)), label="summaries folded in place (None: drawn per run)")

    def in_place() -> bool:
        return data.draw(st.booleans(), label="in place") if here is None else here

    crashes = 0
    for batch in batches:
        if crashes < 3 and data.draw(st.booleans(), label="crash during this batch"):
            crashes += 1
            w.run(batch, keep=lambda what: data.draw(st.booleans(), label=f"{what} reached the broker"),
                  here=in_place())
            w.restart(state_kept=data.draw(st.booleans(), label="state dir kept"))
        w.run(batch, keep=lambda what: True, here=in_place())  # the input from the last commit, read again

    # The customers' records are exact
    want = reference(lifecycles)
    got = {c: (r["pending_points"], r["activated_points"], r["canceled_points"]) for c, r in w.records.items()}
    assert got == {c: want.get(c, (0, 0, 0)) for c in got}  # a former owner's record: all zero
    assert set(want) <= set(got)
    # and the changelogs hold everything the local state does: a later restart from them loses nothing
    assert w.cards == w.local_cards and w.rows == w.local_rows and w.customers == w.local_customers


def legacy_documents(items: list[tuple[int, NormalizedEvent]]) -> dict[str, bytes]:
    """The `cards` table as the version before entry rows left it after absorbing `items`: one whole-card
    document per card (owner and snapshot by the same rules, every entry's observations merged)."""
    docs: dict[str, CardState] = {}
    for offset, ev in items:
        doc = docs.get(ev.voucher_id) or CardState(voucher_id=ev.voucher_id, owner=cards._owner_of(ev))
        owner = cards._owner_of(ev)
        if cards._owner_key(owner) > cards._owner_key(doc.owner):
            doc = doc.model_copy(update={"owner": owner})
        if ev.card is not None and (doc.snapshot is None or cards._snapshot_newer(ev.card, doc.snapshot)):
            doc = doc.model_copy(update={"snapshot": ev.card})
        merged = entries.merge(doc.entries.get(ev.entry_id) or EntryState(id=ev.entry_id), ev.step, ev.observation)
        docs[ev.voucher_id] = doc.model_copy(update={"entries": {**doc.entries, ev.entry_id: merged},
                                                     "version": offset + 1, "last_offset": offset})
    return {v: codec.dump(d) for v, d in docs.items()}


class PrefixWorker:
    """The card stage as the worker runs it (`cards.plan_batch`, writes in the plan's order), over several batches
    between commits. Local state (RocksDB) takes every write; a changelog has what reached the broker. Writes since
    the last commit are pending: a commit (which flushes first) makes them all durable; a crash keeps a prefix of
    each changelog's pending writes (a partition's records reach the broker in order) and any subset of the
    pending outputs. The customers stage folds the outputs that reached the broker and does not crash here; or,
    `here`, the worker folds each batch's summaries itself (agents/customers.py, `fold_here`), and the customers
    changelog and records are pending with the rest."""

    def __init__(self, legacy: dict[str, bytes], here: bool = False):
        # cards table: ("card", voucher) -> aggregate (or old document), ("side", voucher, entry) -> entry copy
        self.local_cards: dict = {("card", v): raw for v, raw in legacy.items()}
        self.local_rows: dict = {}
        self.cards, self.rows = dict(self.local_cards), {}  # durable
        self.pending_cards: list = []
        self.pending_rows: list = []
        self.pending_out: list = []
        self.customers: dict = {}
        self.records: dict = {}
        self.summary_offset = 0
        for raw in legacy.values():  # what the previous version published: each card's summary
            card, _ = cards.load(raw, H72)
            self._deliver([cards.summary(card)])
        self.here = here
        self.local_customers = dict(self.customers)
        self.pending_customers: list = []  # (customer, state) written in place, not yet on the broker
        self.pending_records: list = []  # (customer, record) published in place, not yet on the broker

    @staticmethod
    def _apply(state: dict, writes) -> None:
        for key, value in writes:
            if value is None:
                state.pop(key, None)
            else:
                state[key] = value

    def _card(self, key, value) -> None:
        self._apply(self.local_cards, [(key, value)])
        self.pending_cards.append((key, value))

    def _row(self, key, value) -> None:
        self.local_rows[key] = value
        self.pending_rows.append((key, value))

    def run(self, items: list[tuple[NormalizedEvent, int]], committed: int) -> None:  # the agent, agents/cards.py
        by_card: dict[str, list] = {}
        for ev, offset in items:
            by_card.setdefault(ev.voucher_id, []).append((ev, offset))
        for v, group in by_card.items():
            def side_row(seq, v=v):
                raw = self.local_cards.get(("side", v, seq))
                return codec.load(EntryRecord, raw) if raw is not None else None

            plan = cards.plan_batch(self.local_cards.get(("card", v)), group,
                                    lambda eid, v=v: self.local_rows.get((v, eid)), side_row, committed,
                                    dt.timezone.utc, H72)
            for seq, rec in plan.side_puts.items():
                self._card(("side", v, seq), codec.dump(rec))
            for seq in plan.side_deletes:
                self._card(("side", v, seq), None)
            for rec, _index in plan.rows:
                self._row((v, rec.entry.id), rec)
            if plan.card is not None:
                self._card(("card", v), codec.dump(plan.card))
            self.pending_out += plan.outputs.summaries
        if self.here:  # the batch's summaries folded in place, after the cards
            by_customer: dict[str, list] = {}
            for s in self.pending_out:
                by_customer.setdefault(s.customer_id, []).append((s, None))
            self.pending_out = []
            for customer_id, group in by_customer.items():
                state, record = customers.apply_batch(self.local_customers.get(customer_id), group)
                if state is not self.local_customers.get(customer_id) or record is not None:
                    self.local_customers[customer_id] = state
                    self.pending_customers.append((customer_id, state))
                if record is not None:
                    self.pending_records.append((customer_id, json.loads(codec.dump(record))))

    def _deliver(self, summaries) -> None:
        for s in summaries:
            self.summary_offset += 1
            state, record = customers.apply_batch(self.customers.get(s.customer_id), [(s, self.summary_offset)])
            self.customers[s.customer_id] = state
            if record is not None:
                self.records[s.customer_id] = json.loads(codec.dump(record))

    def commit(self) -> None:
        self._apply(self.cards, self.pending_cards)
        self._apply(self.rows, self.pending_rows)
        self._deliver(self.pending_out)
        self._apply(self.customers, self.pending_customers)
        self.records.update(self.pending_records)
        self.pending_cards, self.pending_rows, self.pending_out = [], [], []
        self.pending_customers, self.pending_records = [], []

    def crash(self, data) -> None:
        kept_cards = self.pending_cards[:data.draw(st.integers(0, len(self.pending_cards)), label="cards kept")]
        kept_rows = self.pending_rows[:data.draw(st.integers(0, len(self.pending_rows)), label="rows kept")]
        self._apply(self.cards, kept_cards)
        self._apply(self.rows, kept_rows)
        self._deliver([s for s in self.pending_out if data.draw(st.booleans(), label="output reached")])
        kept_customers = self.pending_customers[:data.draw(st.integers(0, len(self.pending_customers)),
                                                           label="customers kept")] if self.here else []
        self._apply(self.customers, kept_customers)
        self.records.update(r for r in self.pending_records if data.draw(st.booleans(), label="record reached"))
        self.pending_cards, self.pending_rows, self.pending_out = [], [], []
        self.pending_customers, self.pending_records = [], []
        restart = data.draw(st.sampled_from(("kept", "restored", "overlaid")), label="restart")
        if restart == "restored":  # empty state dir: everything from the changelogs
            self.local_cards, self.local_rows = dict(self.cards), dict(self.rows)
            self.local_customers = dict(self.customers)
        elif restart == "overlaid":  # state dir kept, the changelogs' records after its last offset re-applied:
            self._apply(self.local_cards, kept_cards)  # the aggregate may step back behind rows written after it
            self._apply(self.local_rows, kept_rows)
            self._apply(self.local_customers, kept_customers)


def read_with_crashes(w: PrefixWorker, items: list[tuple[NormalizedEvent, int]], committed: int, data) -> None:
    """The worker reads `items` from offset `committed` in drawn batch sizes; after each batch it commits, or
    crashes (at most three times) and reads again from the last commit; a last commit at the end."""
    pos, crashes = committed, 0
    while pos < len(items):
        size = data.draw(st.integers(1, 4), label="batch size")
        w.run(items[pos:pos + size], committed)
        pos = min(pos + size, len(items))
        if data.draw(st.booleans(), label="commit"):
            w.commit()
            committed = pos
        elif crashes < 3 and data.draw(st.booleans(), label="crash"):
            crashes += 1
            w.crash(data)
            pos = committed
    w.commit()


@settings(max_examples=300, deadline=None)
@given(data=st.data())
def test_crashes_between_commits_then_replay_in_other_batches_lose_nothing_and_count_nothing_twice(data):
    """Several batches between commits, changelogs that keep a prefix, the input read again in other batch
    sizes, and cards that start in the format before entry rows (converted on first touch, the input read
    again from any point at or before the last record they absorbed)."""
    lifecycles = [data.draw(moving_lifecycle(n)) for n in range(data.draw(st.integers(1, 7)))]
    deliveries = [(lc, ev) for lc in lifecycles for ev in lc[4]]
    order = data.draw(st.permutations(deliveries + data.draw(st.lists(st.sampled_from(deliveries), max_size=4))))
    items = [(ev, off) for off, ev in enumerate(
        to_event(entry, voucher, customer, activates, step, points, minutes)
        for (entry, voucher, customer, activates, _), (step, points, minutes) in order)]
    absorbed = data.draw(st.integers(0, len(items)), label="records the previous version absorbed")
    w = PrefixWorker(legacy_documents([(off, ev) for ev, off in items[:absorbed]]),
                     here=data.draw(st.booleans(), label="summaries folded in place"))

    # the previous version's last commit: anywhere up to what it absorbed
    committed = data.draw(st.integers(0, absorbed), label="first offset read")
    read_with_crashes(w, items, committed, data)

    want = reference(lifecycles)
    got = {c: (r["pending_points"], r["activated_points"], r["canceled_points"]) for c, r in w.records.items()}
    assert got == {c: want.get(c, (0, 0, 0)) for c in got}  # a former owner's record: all zero
    assert set(want) <= set(got)
    # every entry has its row (or its card was never touched again: still the old document), and the changelogs
    # hold what the local state does
    for (entry, voucher, *_rest) in lifecycles:
        assert (voucher, entry) in w.rows or cards.is_legacy(w.cards[("card", voucher)])
    assert w.cards == w.local_cards and w.rows == w.local_rows and (not w.here or w.customers == w.local_customers)


class _Answers:
    """Stands in for hypothesis' `data` in PrefixWorker.crash: fixed answers, in the order it asks."""

    def __init__(self, *answers):
        self._answers = list(answers)

    def draw(self, _strategy, label=None):
        return self._answers.pop(0)


def test_a_replay_that_meets_rows_of_a_lost_batch_ends_with_the_cards_true_totals():
    """Found by the property above (random search): the input, the crash and the replay it drew, fixed.

    The lost batch published card v1 at version 14 (pending 0) and that summary reached the customer; its rows of
    lopp_4 (with the later update at offset 16, 1 point) and lopp_5 reached the changelog, its aggregate did not.
    The replay meets lopp_4's row at offset 12 and counts it then: its summary with pending 1 had version 13 < 14
    and was ignored, and later records changed nothing, so the customer kept pending 0. Now the card remembers the
    row had come to offset 16, and when the replay has read that far it publishes again with version 17."""
    on = T0.date() + dt.timedelta(days=1)
    steps = [  # (entry, voucher, step, points, minutes), all customer c1, in input order
        ("lopp_0", "v1", "added", 0, None), ("lopp_0", "v1", "activated", 0, 20_000),
        ("lopp_1", "v1", "added", 0, None), ("lopp_1", "v1", "activated", 0, 20_000),
        ("lopp_2", "v1", "added", 0, None), ("lopp_2", "v1", "updated", 0, 1),
        ("lopp_2", "v1", "activated", 0, 20_000),
        ("lopp_3", "v1", "added", 0, None), ("lopp_3", "v1", "updated", 0, 1), ("lopp_3", "v1", "updated", 0, 2),
        ("lopp_3", "v1", "activated", 0, 20_000),
        ("lopp_6", "v2", "added", 0, None), ("lopp_4", "v1", "added", 0, None), ("lopp_5", "v1", "added", 0, None),
        ("lopp_5", "v1", "updated", 0, 1), ("lopp_5", "v1", "updated", 0, 2), ("lopp_4", "v1", "updated", 1, 1),
        ("lopp_6", "v2", "updated", 0, 1), ("lopp_6", "v2", "updated", 0, 2), ("lopp_6", "v2", "activated", 0, 20_000),
        ("lopp_0", "v1", "added", 0, None), ("lopp_0", "v1", "added", 0, None),
    ]
    items = [(to_event(entry, voucher, "c1", on, step, points, minutes), off)
             for off, (entry, voucher, step, points, minutes) in enumerate(steps)]
    w = PrefixWorker(legacy_documents([(off, ev) for ev, off in items[:6]]))  # the previous version absorbed 0-5
    w.run(items[6:10], committed=6)  # converts v1
    w.commit()
    for batch in (items[10:11], items[11:14], items[14:18]):
        w.run(batch, committed=10)
    # the crash: no cards write since the commit survived, the first 6 row writes did; of the 5 summaries only
    # the third (v1, version 14, pending 0) reached the customers stage; restart from the changelogs
    w.crash(_Answers(0, 6, False, False, True, False, False, "restored"))
    for off in range(10, 18):
        w.run(items[off:off + 1], committed=10)
    w.commit()
    for off in range(18, 22):
        w.run(items[off:off + 1], committed=off)
        w.commit()
    assert w.records["c1"]["pending_points"] == 1  # lopp_4's point, still pending


def events_era_state(items: list[tuple[NormalizedEvent, int]]) -> tuple[dict[str, bytes], dict]:
    """Aggregates and entry rows as a version whose cards read `pending-points-events` left them after absorbing
    `items` (offsets of that topic): `source: events`, its offsets in `last_offset` and in the rows' `offset`."""
    aggs, rows = {}, {}
    for ev, off in items:
        res = cards.apply_batch(aggs.get(ev.voucher_id), [(ev, off)],
                                lambda eid, v=ev.voucher_id: rows.get((v, eid)), dt.timezone.utc, H72)
        aggs[ev.voucher_id] = res.card
        rows.update({(ev.voucher_id, eid): r for eid, r in res.rows.items()})
    old = {v: codec.dump(a.model_copy(update={"source": "events", "last_offset": a.input_offset, "input_offset": -1}))
           for v, a in aggs.items()}
    return old, {k: r.model_copy(update={"offset": r.input_offset, "input_offset": None}) for k, r in rows.items()}


@settings(max_examples=200, deadline=None)
@given(data=st.data())
def test_after_the_upgrade_to_reading_the_input_crashes_and_replays_lose_nothing_and_count_nothing_twice(data):
    """Cards an earlier version built from `pending-points-events` (another topic's offsets) then read the input
    topic, from a point at or before the last delivery they absorbed (the old ingest may have re-keyed records
    past its input commit: read again, duplicates), with crashes and replays as above. Their summaries must
    outrank every one the earlier version published."""
    lifecycles = [data.draw(moving_lifecycle(n)) for n in range(data.draw(st.integers(1, 6)))]
    deliveries = [(lc, ev) for lc in lifecycles for ev in lc[4]]
    order = data.draw(st.permutations(deliveries + data.draw(st.lists(st.sampled_from(deliveries), max_size=3))))
    events = [to_event(entry, voucher, customer, activates, step, points, minutes)
              for (entry, voucher, customer, activates, _), (step, points, minutes) in order]
    absorbed = data.draw(st.integers(0, len(events)), label="deliveries the earlier version absorbed")
    gap = data.draw(st.integers(0, 50), label="offsets of the old topic before this input")  # its own numbering
    old, old_rows = events_era_state([(ev, gap + i) for i, ev in enumerate(events[:absorbed])])
    w = PrefixWorker(old)
    w.local_rows, w.rows = dict(old_rows), dict(old_rows)

    start = data.draw(st.integers(0, absorbed), label="first delivery read from the input")
    items = [(ev, off) for off, ev in enumerate(events[start:])]  # input offsets, from 0
    read_with_crashes(w, items, 0, data)

    want = reference(lifecycles)
    got = {c: (r["pending_points"], r["activated_points"], r["canceled_points"]) for c, r in w.records.items()}
    assert got == {c: want.get(c, (0, 0, 0)) for c in got}
    assert set(want) <= set(got)
    assert w.cards == w.local_cards and w.rows == w.local_rows
