"""Property: a crash may drop any subset of a batch's state writes (entry rows, card aggregate: two changelogs, no
transactions) and of its output records; the input is then read again from the last commit. Whatever was dropped,
and whether the worker kept its local state or restored from the changelogs, nothing is lost or counted twice,
also when cards move between customers."""
from __future__ import annotations

import datetime as dt
import json

from hypothesis import given, settings
from hypothesis import strategies as st

from app.logic import cards, customers
from app.models import codec
from app.models.records import NormalizedEvent
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
    durable (the changelogs, only the writes that reached the broker)."""

    def __init__(self):
        self.local_cards: dict = {}
        self.local_rows: dict = {}
        self.cards: dict = {}  # durable
        self.rows: dict = {}
        self.customers: dict = {}
        self.records: dict = {}
        self.summary_offset = 0

    def run(self, items: list[tuple[NormalizedEvent, int]], keep) -> None:
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
            summaries += [s for s in res.outputs.summaries if keep(("summary", s.customer_id))]
        by_customer: dict[str, list] = {}
        for s in summaries:
            self.summary_offset += 1
            by_customer.setdefault(s.customer_id, []).append((s, self.summary_offset))
        for customer_id, group in by_customer.items():  # this stage does not crash here
            state, record = customers.apply_batch(self.customers.get(customer_id), group)
            self.customers[customer_id] = state
            if record is not None:
                self.records[customer_id] = json.loads(codec.dump(record))

    def restart(self, state_kept: bool) -> None:
        if not state_kept:  # empty state dir: restored from the changelogs
            self.local_cards, self.local_rows = dict(self.cards), dict(self.rows)


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
    crashes = 0
    for batch in batches:
        if crashes < 3 and data.draw(st.booleans(), label="crash during this batch"):
            crashes += 1
            w.run(batch, keep=lambda what: data.draw(st.booleans(), label=f"{what} reached the broker"))
            w.restart(state_kept=data.draw(st.booleans(), label="state dir kept"))
        w.run(batch, keep=lambda what: True)  # the input from the last commit, read again

    # The customers' records are exact
    want = reference(lifecycles)
    got = {c: (r["pending_points"], r["activated_points"], r["canceled_points"]) for c, r in w.records.items()}
    assert got == {c: want.get(c, (0, 0, 0)) for c in got}  # a former owner's record: all zero
    assert set(want) <= set(got)
    # and the changelogs hold everything the local state does: a later restart from them loses nothing
    assert w.cards == w.local_cards and w.rows == w.local_rows
