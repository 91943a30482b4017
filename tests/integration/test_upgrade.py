"""Checks before a worker starts: an earlier version's unread records, the input topic's partition count."""
from __future__ import annotations

import pytest

import topics
from devtools import kafka
from tests.support import helpers

pytestmark = pytest.mark.integration


def test_upgrade__a_worker_refuses_to_start_over_records_an_earlier_version_left_unread_then_starts_once_read(
    broker, worker_factory, topic_prefix
):
    # Given the topic an earlier version re-keyed deliveries through, holding a record its cards did not read yet
    events = topic_prefix + topics.LEGACY_EVENTS
    kafka.create_topic(broker.bootstrap, events, 4)
    kafka.produce(broker.bootstrap, events, [(b"v1", b'{"step": "added"}', [])])

    # When this version starts, it exits at once, saying what to do (it no longer reads that topic)
    refused = worker_factory("refused")
    assert refused.process.wait(60) != 0
    log = refused.log_tail()
    assert "1 records in " + events in log and "Upgrading" in log, log

    # Once the earlier version has read it (its consumer group committed past it), this version starts, and
    # deletes the drained topic (the group's offsets on it would expire, and the check would then count it again)
    assert sum(kafka.commit_to_end(broker.bootstrap, refused.env["APP_ID"], events).values()) == 1
    started = worker_factory("started").wait_ready()
    assert "deleted " + events in started.log_tail(100_000)
    # (on Apache Kafka a deletion completes after its reply)
    assert helpers.wait_until(lambda: events not in kafka.topic_names(broker.bootstrap), timeout=30,
                              what=f"{events} deleted")


@pytest.mark.parametrize("topic", [topics.WEBHOOKS, topics.CARD_UPDATES])
def test_a_worker_refuses_an_input_topic_with_another_partition_count_than_partitions(
    broker, worker_factory, topic_prefix, topic
):
    # A delivery is folded on the input partition it sits on, which must be its card's table partition; a card's
    # summary into the customers table partition its customer id is keyed to on pending-points-card-updates
    kafka.create_topic(broker.bootstrap, topic_prefix + topic.name, 3)
    w = worker_factory("mismatch", PARTITIONS="4")
    assert w.process.wait(60) != 0
    assert f"{topic_prefix + topic.name} has 3 partitions and PARTITIONS is 4" in w.log_tail(), w.log_tail()
