"""The entry state machine: any permutation of an entry's deliveries, with duplicates, gives the same state."""
from __future__ import annotations

import datetime as dt
import itertools

import pytest

from app.logic import entries
from app.models.records import EntryState, Observation, Status, Step

T = dt.datetime(2025, 3, 1, tzinfo=dt.timezone.utc)


def obs(points, *, updated=None, activated_at=None, activates="2025-03-10"):
    return Observation(
        points=points, activates_at=dt.date.fromisoformat(activates), created_at=T,
        updated_at=updated, customer_id="c", order_id="o", activated_at=activated_at,
    )


ADDED = (Step.ADDED, obs(10))
UPDATED = (Step.UPDATED, obs(12, updated=T + dt.timedelta(hours=1)))
UPDATED_2 = (Step.UPDATED, obs(7, updated=T + dt.timedelta(hours=2), activates="2025-03-12"))
ACTIVATED = (Step.ACTIVATED, obs(7, updated=T + dt.timedelta(days=9), activated_at=T + dt.timedelta(days=9)))
CANCELED = (Step.CANCELED, obs(7, updated=T + dt.timedelta(hours=3)))


def fold(events):
    state = EntryState(id="lopp_1")
    for step, o in events:
        state = entries.merge(state, step, o)
    return state


def outcome(state):
    return entries.status(state), entries.points(state), entries.activates_at(state), entries.view(state)


LIFECYCLES = {
    "activated": ([ADDED, UPDATED, UPDATED_2, ACTIVATED], (Status.ACTIVATED, 7)),
    "canceled": ([ADDED, UPDATED, CANCELED], (Status.CANCELED, 7)),
    "pending": ([ADDED, UPDATED, UPDATED_2], (Status.PENDING, 7)),
    "added only": ([ADDED], (Status.PENDING, 10)),
}


@pytest.mark.parametrize("name", LIFECYCLES)
def test_merge__every_permutation_with_duplicates_gives_one_state(name):
    events, (status, points) = LIFECYCLES[name]
    reference = outcome(fold(events))
    assert reference[:2] == (status, points)
    for n_dup in range(len(events)):
        with_dup = events + [events[n_dup]]
        for perm in itertools.permutations(with_dup):
            assert outcome(fold(perm)) == reference, perm


def test_merge__a_late_added_or_updated_never_revives_a_finished_entry():
    state = fold([ACTIVATED, ADDED, UPDATED])
    assert entries.status(state) is Status.ACTIVATED and entries.points(state) == 7
    state = fold([CANCELED, UPDATED_2, ADDED])
    assert entries.status(state) is Status.CANCELED


def test_merge__pending_points_follow_the_latest_updated_at_not_arrival():
    assert entries.points(fold([UPDATED_2, UPDATED, ADDED])) == 7
    assert entries.activates_at(fold([UPDATED_2, UPDATED, ADDED])) == dt.date(2025, 3, 12)


def test_merge__an_identical_duplicate_returns_the_same_object():
    state = fold([ADDED])
    assert entries.merge(state, *ADDED) is state


def test_activation__joins_added_and_activated_in_either_order():
    tz = dt.timezone.utc
    assert entries.activation(fold([ADDED]), "v", tz) is None
    assert entries.activation(fold([ACTIVATED]), "v", tz) is None
    a = entries.activation(fold([ADDED, ACTIVATED]), "v", tz)
    b = entries.activation(fold([ACTIVATED, ADDED]), "v", tz)
    assert a == b
    assert a.points == 7 and a.added_at == T and a.pending_seconds == 9 * 86400
    assert a.activated_early is False  # activated on 2025-03-10, the day it was due


def test_activation__early_is_judged_in_the_project_time_zone():
    from zoneinfo import ZoneInfo

    # 2025-03-09 23:30 UTC is already 2025-03-10 in Warsaw: on time there, a day early in UTC.
    act = (Step.ACTIVATED, obs(7, activated_at=dt.datetime(2025, 3, 9, 23, 30, tzinfo=dt.timezone.utc)))
    state = fold([ADDED, act])
    assert entries.activation(state, "v", dt.timezone.utc).activated_early is True
    assert entries.activation(state, "v", ZoneInfo("Europe/Warsaw")).activated_early is False
