"""Upgrading from a version whose cards read `pending-points-events`: records it left unread there are not lost."""
from __future__ import annotations

import topics
from devtools import kafka


def test_upgrade__a_worker_refuses_to_start_over_records_an_earlier_version_left_unread_then_starts_once_read(
    broker, worker_factory, topic_prefix
):
    # Given the topic an earlier version re-keyed deliveries through, holding a record its cards did not read yet
    events = topic_prefix + topics.EVENTS.name
    app_id = f"pp-{topic_prefix.rstrip('-')}"
    kafka.create_topic(broker.bootstrap, events, 4)
    kafka.produce(broker.bootstrap, events, [(b"v1", b'{"step": "added"}', [])])

    # When this version starts, it exits at once, saying what to do (it no longer reads that topic)
    refused = worker_factory("refused")
    assert refused.process.wait(60) != 0
    log = refused.log_tail()
    assert "1 records in " + events in log and "Upgrading" in log, log

    # Once the earlier version has read it (its consumer group committed past it), this version starts
    assert sum(kafka.commit_to_end(broker.bootstrap, app_id, events).values()) == 1
    worker_factory("started").wait_ready()
