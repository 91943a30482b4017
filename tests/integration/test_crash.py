"""Crash anywhere: kill -9 a worker repeatedly while it processes a backlog; the final state is still exact."""
from __future__ import annotations

import os
import random
import shutil
import time

import pytest

import topics
from tests.support import helpers
from devtools import kafka
from tests.support import scenario

pytestmark = [pytest.mark.integration, pytest.mark.slow]

CRASH_POINTS = int(os.environ.get("CRASH_POINTS", "6"))
FAST_FAILOVER = {"SESSION_TIMEOUT_S": "6", "HEARTBEAT_INTERVAL_S": "1", "REBALANCE_TIMEOUT_S": "6"}


def _accepted(worker) -> int:
    try:
        status, stats = worker.get("/stats")
    except OSError:
        return 0
    return sum((stats or {}).get("processed", {}).values()) if status == 200 else 0


def _wait_accepted(worker, at_least: int, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if _accepted(worker) >= at_least:
            return True
        time.sleep(0.02)
    return False


def test_crash__kill_9_with_state_kept_or_lost_loses_nothing_and_counts_nothing_twice(
    broker, worker_factory, topic_prefix
):
    rnd = random.Random(int(os.environ.get("CRASH_SEED", "3")))
    sc = scenario.build(seed=31, customers=150)
    expected = scenario.expected_customers(sc)
    helpers.feed(broker.bootstrap, topic_prefix, sc.deliveries)  # the whole backlog, before any worker runs

    crashes = []
    w = worker_factory("crashy", **FAST_FAILOVER).wait_ready()
    for i in range(CRASH_POINTS):
        # Given the worker is part-way through the backlog (a random number of deliveries since it started)
        point = rnd.randint(20, 400)
        reached = _wait_accepted(w, point, timeout=60)
        # When it is killed without warning, and restarts with its state dir intact or deleted
        w.kill()
        lose_state = i % 2 == 1
        crashes.append((point, reached, "state deleted" if lose_state else "state kept"))
        if lose_state:
            shutil.rmtree(w.data_dir, ignore_errors=True)
        w.start().wait_ready(timeout=120)

    # Then, once the backlog is processed, the state topic and the views are exact
    got = helpers.wait_for_state(broker.bootstrap, topic_prefix, expected, timeout=240)
    assert {c: scenario.normalize_customer(r) for c, r in got.items()} == expected, (crashes, w.log_tail())
    assert helpers.views_mismatches(w, expected) == [], crashes
    assert helpers.voucher_mismatches(w, sc) == [], crashes
    # and the pending-points-entries topic ends with every entry's true state (entry rows: their own changelog)
    want = {e.id: (e.status, e.points) for e in sc.entries}

    def entries_exact(rs) -> bool:
        return {k: (v["status"], v["points"]) for k, v in helpers.customer_records(rs).items()} == want

    records = kafka.read_until(broker.bootstrap, topic_prefix + topics.ENTRIES.name, entries_exact, timeout=60)
    assert entries_exact(records), crashes
    # and the crashes really happened mid-stream, not after the work was done
    assert sum(reached for _, reached, _ in crashes) >= CRASH_POINTS // 2, crashes
