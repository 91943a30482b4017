"""Property: random lifecycles, randomly duplicated and interleaved, through the real state logic, always equal a
small reference model written here independently."""
from __future__ import annotations

import datetime as dt

from hypothesis import given, settings
from hypothesis import strategies as st

from app.models.records import CardSnapshot, NormalizedEvent, Observation, Step
from tests.support.driver import Driver

T0 = dt.datetime(2025, 1, 1, tzinfo=dt.timezone.utc)
CUSTOMERS = ("c1", "c2", "c3")


@st.composite
def lifecycle(draw, n: int):
    """One entry's events as (step, points, updated_at-minutes or None), plus its truth."""
    voucher = draw(st.sampled_from(("v1", "v2", "v3", "v4")))
    customer = CUSTOMERS[int(voucher[1]) % 3]
    activates = T0.date() + dt.timedelta(days=draw(st.integers(1, 5)))
    pending = [("added", draw(st.integers(0, 1000)), None)]
    minutes = sorted(draw(st.lists(st.integers(1, 10_000), max_size=3, unique=True)))
    pending += [("updated", draw(st.integers(0, 1000)), m) for m in minutes]
    if draw(st.booleans()):
        pending = pending[1:] or pending  # the added event may never arrive, if an update does
    final = draw(st.sampled_from((None, "activated", "canceled")))
    events = list(pending)
    if final:
        events.append((final, draw(st.integers(0, 1000)), 20_000))
    entry = f"lopp_{n}"
    return entry, voucher, customer, activates, events


def to_event(entry, voucher, customer, activates, step, points, minutes) -> NormalizedEvent:
    upd = T0 + dt.timedelta(minutes=minutes) if minutes is not None else None
    return NormalizedEvent(
        step=Step(step), entry_id=entry, voucher_id=voucher, customer_id=customer,
        observation=Observation(points=points, activates_at=activates, created_at=T0, updated_at=upd,
                                customer_id=customer, activated_at=upd if step == "activated" else None),
        card=CardSnapshot(points=minutes or 0, as_of=upd or T0),
    )


def reference(lifecycles) -> dict[str, dict]:
    """Per customer: sums by status and next activation, straight from the definitions."""
    out = {c: {"pending": 0, "activated": 0, "canceled": 0, "due": {}} for c in CUSTOMERS}
    for _entry, _voucher, customer, activates, events in lifecycles:
        finals = [e for e in events if e[0] in ("activated", "canceled")]
        if finals:
            status, points = finals[0][0], finals[0][1]
        else:
            status = "pending"
            points = max(events, key=lambda e: -1 if e[2] is None else e[2])[1]
        out[customer][status] += points
        if status == "pending":
            out[customer]["due"][activates] = out[customer]["due"].get(activates, 0) + points
    return out


@settings(max_examples=150, deadline=None)
@given(data=st.data())
def test_random_lifecycles_any_order_with_duplicates_and_any_batching_match_the_reference(data):
    lifecycles = [data.draw(lifecycle(n)) for n in range(data.draw(st.integers(1, 8)))]
    deliveries = [(lc, ev) for lc in lifecycles for ev in lc[4]]
    dupes = data.draw(st.lists(st.sampled_from(deliveries), max_size=len(deliveries)))
    order = data.draw(st.permutations(deliveries + dupes))

    events = [to_event(entry, voucher, customer, activates, step, points, minutes)
              for (entry, voucher, customer, activates, _), (step, points, minutes) in order]
    batch = data.draw(st.integers(1, 6), label="batch size")  # 1 = one event at a time
    driver = Driver()
    for i in range(0, len(events), batch):
        driver.feed_batch(events[i:i + batch])

    want = reference(lifecycles)
    for customer, record in driver.customer_records.items():
        w = want[customer]
        got = (record["pending_points"], record["activated_points"], record["canceled_points"])
        assert got == (w["pending"], w["activated"], w["canceled"])
        if w["due"]:
            day = min(w["due"])
            assert record["next_activation"] == {"date": day.isoformat(), "points": w["due"][day]}
        else:
            assert record["next_activation"] is None
    # every customer with entries got a record
    assert set(driver.customer_records) == {lc[2] for lc in lifecycles}


@settings(max_examples=100, deadline=None)
@given(data=st.data())
def test_batching_changes_no_state_and_no_final_output(data):
    """A batch folds to the same card and customer states (versions included) and the same last records as
    one event at a time: a worker may cut its input anywhere, also differently after a restart."""
    lifecycles = [data.draw(lifecycle(n)) for n in range(data.draw(st.integers(1, 6)))]
    deliveries = [(lc, ev) for lc in lifecycles for ev in lc[4]]
    order = data.draw(st.permutations(deliveries + data.draw(st.lists(st.sampled_from(deliveries), max_size=4))))
    events = [to_event(entry, voucher, customer, activates, step, points, minutes)
              for (entry, voucher, customer, activates, _), (step, points, minutes) in order]
    one, batched = Driver(), Driver()
    for ev in events:
        one.feed_event(ev)
    cuts = sorted(data.draw(st.sets(st.integers(1, max(1, len(events) - 1)), max_size=4)))
    for lo, hi in zip([0, *cuts], [*cuts, len(events)]):
        batched.feed_batch(events[lo:hi])
    strip = lambda m: m.model_dump(exclude={"last_offset"})  # noqa: E731  (offsets differ: fewer summaries)
    assert {k: strip(v) for k, v in batched.cards.items()} == {k: strip(v) for k, v in one.cards.items()}
    assert batched.customer_records == one.customer_records
    assert batched.activations == one.activations
    assert batched.published <= one.published
