"""Scale-out and failover: workers share partitions, every worker answers every key, nothing is lost."""
from __future__ import annotations

import pytest

from tests.support import helpers
from tests.support import scenario

pytestmark = [pytest.mark.integration, pytest.mark.slow]

FAST = {"SESSION_TIMEOUT_S": "6", "HEARTBEAT_INTERVAL_S": "1", "REBALANCE_TIMEOUT_S": "6",
        "TABLE_STANDBY_REPLICAS": "1"}


def test_scale_out__three_workers_route_fail_over_and_rebalance_back(broker, worker_factory, topic_prefix):
    first, second = scenario.build(seed=41, customers=30), scenario.build(seed=42, customers=30)
    expected_first = scenario.expected_customers(first)
    expected_all = {**expected_first, **scenario.expected_customers(second)}

    # Given three workers sharing the partitions
    workers = [worker_factory(f"w{i}", **FAST) for i in range(3)]
    for w in workers:
        w.wait_ready(timeout=120)
    helpers.feed(broker.bootstrap, topic_prefix, first.deliveries)
    got = helpers.wait_for_state(broker.bootstrap, topic_prefix, expected_first, timeout=180)
    assert {c: scenario.normalize_customer(r) for c, r in got.items()} == expected_first

    # Then every worker answers for every key, routed to the owner
    for w in workers:
        helpers.wait_views(w, expected_first, timeout=60)
        assert helpers.views_mismatches(w, expected_first) == []

    # When one worker stops, the others take over its partitions and serve its keys
    gone = workers.pop(0)
    gone.stop()
    failover_s = helpers.wait_views(workers[0], expected_first, timeout=120)
    assert helpers.views_mismatches(workers[1], expected_first) == []
    print(f"\nfailover after SIGTERM: all {len(expected_first)} customers exact on survivors in {failover_s:.1f}s")

    # And while it is away, new deliveries are processed
    helpers.feed(broker.bootstrap, topic_prefix, second.deliveries)
    helpers.wait_views(workers[0], expected_all, timeout=120)

    # When it comes back, partitions move back to it and nothing is lost
    gone.start().wait_ready(timeout=120)
    rejoin_s = helpers.wait_views(gone, expected_all, timeout=120)
    print(f"rejoin: returning worker answers all {len(expected_all)} customers exact in {rejoin_s:.1f}s")
    for w in [gone, *workers]:
        assert helpers.views_mismatches(w, expected_all) == []
    got = helpers.wait_for_state(broker.bootstrap, topic_prefix, expected_all, timeout=60)
    assert {c: scenario.normalize_customer(r) for c, r in got.items()} == expected_all
