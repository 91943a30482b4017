"""The whole delivery scenario through the pure logic equals the reference model (no broker)."""
from __future__ import annotations

import random

import pytest

from tests.support import scenario
from tests.support.driver import Driver


def _run(sc, order_seed=None):
    deliveries = list(sc.deliveries)
    if order_seed is not None:
        random.Random(order_seed).shuffle(deliveries)
    d = Driver(max_bytes=65536)
    for dl in deliveries:
        d.feed(dl.value, dict(dl.headers))
    return d


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_scenario__customer_records_equal_the_reference(seed):
    sc = scenario.build(seed=seed)
    d = _run(sc)
    expected = scenario.expected_customers(sc)
    assert {c: scenario.normalize_customer(r) for c, r in d.customer_records.items()} == expected
    assert d.dead_letters == sc.malformed_count


def test_scenario__activations_equal_the_reference():
    sc = scenario.build(seed=4)
    d = _run(sc)
    expected = scenario.expected_activations(sc)
    got = {k: {f: v[f] for f in next(iter(expected.values()))} for k, v in d.activations.items()}
    assert got == expected


def test_scenario__any_delivery_order_gives_the_same_records():
    sc = scenario.build(seed=5, customers=10)
    first = _run(sc, order_seed=1)
    for order in (2, 3, 4):
        again = _run(sc, order_seed=order)
        assert again.customer_records == first.customer_records
        assert again.activations == first.activations


def test_scenario__replaying_every_delivery_publishes_nothing_more():
    sc = scenario.build(seed=6, customers=10)
    d = _run(sc)
    published = d.published
    for dl in sc.deliveries:
        d.feed(dl.value, dict(dl.headers))
    assert d.published == published
