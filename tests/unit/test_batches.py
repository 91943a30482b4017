"""Grouping a batch by key: arrival order kept per key, and table writes routed by the group's own record."""
from __future__ import annotations

from types import SimpleNamespace

from faust.streams import current_event

from app.agents.batches import by_key


def ev(partition: int, offset: int):  # the part of Faust's Message used here
    return SimpleNamespace(partition=partition, offset=offset)


def test_by_key__keeps_arrival_order_and_makes_each_groups_last_event_current():
    e = [ev(0, 10), ev(1, 20), ev(0, 11), ev(1, 21), ev(0, 12)]
    items = [(b"a", "a1", e[0]), (b"b", "b1", e[1]), (b"a", "a2", e[2]), (b"b", "b2", e[3]), (b"c", "c1", e[4])]
    seen = []
    for key, group in by_key(items):
        # Faust picks the changelog and RocksDB partition of a table write from the current event
        seen.append((key, [v for v, _ in group], current_event().message.offset))
    assert seen == [(b"a", ["a1", "a2"], 11), (b"b", ["b1", "b2"], 21), (b"c", ["c1"], 12)]
