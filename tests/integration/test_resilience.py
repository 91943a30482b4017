"""Startup before the broker, a broker that stops answering, and clean shutdown, with real processes."""
from __future__ import annotations

import os
import signal
import time

import pytest

from devtools import embedded_broker
from tests.support import helpers
from tests.support import scenario
from devtools.workers import Worker

pytestmark = pytest.mark.integration


def _wait_log(worker: Worker, text: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while text not in worker.log_tail(1_000_000):
        assert time.monotonic() < deadline, f"{text!r} not logged in {timeout}s: {worker.log_tail()}"
        assert worker.process.poll() is None, f"worker exited: {worker.log_tail()}"
        time.sleep(0.1)


def test_startup__a_worker_started_before_the_broker_waits_and_then_works(own_broker, worker_factory):
    port = embedded_broker.free_port()
    w = worker_factory(bootstrap=f"127.0.0.1:{port}")
    _wait_log(w, "Kafka not reachable", timeout=30)  # Given no broker: the worker waits, alive
    broker = own_broker(port)  # When the broker comes up
    w.wait_ready(timeout=120)
    sc = scenario.build(seed=51, customers=5)
    helpers.feed(broker.bootstrap, "", sc.deliveries)
    # Then it processes everything exactly
    helpers.wait_views(w, scenario.expected_customers(sc), timeout=120)


def test_broker_pause__a_frozen_broker_neither_kills_the_worker_nor_loses_input(own_broker, worker_factory):
    broker = own_broker()
    w = worker_factory(bootstrap=broker.bootstrap)
    w.wait_ready()
    before, after = scenario.build(seed=52, customers=10), scenario.build(seed=53, customers=10)
    helpers.feed(broker.bootstrap, "", before.deliveries)
    helpers.wait_views(w, scenario.expected_customers(before), timeout=120)
    # When the broker stops answering for longer than the session timeout
    os.kill(broker.process.pid, signal.SIGSTOP)
    time.sleep(15)  # the length of the outage under test
    os.kill(broker.process.pid, signal.SIGCONT)
    # Then the same worker process carries on, and later input is processed on top of the earlier state
    assert w.process.poll() is None
    helpers.feed(broker.bootstrap, "", after.deliveries)
    expected = {**scenario.expected_customers(before), **scenario.expected_customers(after)}
    helpers.wait_views(w, expected, timeout=180)
    assert w.process.poll() is None


def test_sigterm__finishes_commits_and_restarts_without_recovering_from_scratch(broker, worker_factory, topic_prefix):
    sc = scenario.build(seed=54, customers=20)
    expected = scenario.expected_customers(sc)
    w = worker_factory("t").wait_ready()
    helpers.feed(broker.bootstrap, topic_prefix, sc.deliveries)
    helpers.wait_views(w, expected, timeout=120)
    # When it is asked to stop
    w.process.send_signal(signal.SIGTERM)
    assert w.process.wait(30) == 0
    first_run = len(w.log_tail(10_000_000))
    # Then a restart on the same state dir restores nothing from the changelogs and serves the same state
    w.start().wait_ready()
    second_run = w.log_tail(10_000_000)[first_run:]
    assert "Restoring state from changelog topics" not in second_run
    assert helpers.views_mismatches(w, expected) == []
