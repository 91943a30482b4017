"""Kafka's record size limit, enforced by the service itself (the embedded broker takes records of any size)."""
from __future__ import annotations

import dataclasses
import re
import time

import pytest

import topics
from app.logic.decode import decode
from devtools import simulate
from tests.support import helpers
from devtools import kafka

pytestmark = pytest.mark.integration

SMALL_LIMIT = {"KAFKA_MAX_RECORD_BYTES": "65536", "MAX_DELIVERY_BYTES": "49152"}


def _one_customer(tag: str, n: int) -> list[simulate.Delivery]:
    """`n` cards (one added entry each), all held by customer `cust_<tag>_00000000`."""
    same = re.compile(rf"cust_{tag}_\d{{8}}".encode())
    out = []
    for i in range(n):
        d = simulate.fresh_added(tag, i)
        out.append(dataclasses.replace(d, value=same.sub(f"cust_{tag}_00000000".encode(), d.value)))
    return out


def test_a_record_over_the_limit_commits_nothing_past_its_input_and_a_restart_with_the_limit_raised_processes_it(
    broker, worker_factory, topic_prefix
):
    app_id = f"pp-{topic_prefix.rstrip('-')}"
    # Given a customer holding 400 cards (their customer-point-state record is about 95 KB) among 100 other
    # customers, and a worker whose record limit is 64 KiB
    big = _one_customer("big", 400)
    others = [simulate.fresh_added("other", i) for i in range(100)]
    mixed = [d for pair in zip(big[:100], others) for d in pair] + big[100:]
    w = worker_factory("small", **SMALL_LIMIT).wait_ready()
    helpers.feed(broker.bootstrap, topic_prefix, mixed)

    # When the customer's record outgrows the limit, the worker stops, loudly
    deadline = time.monotonic() + 180
    while w.process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.2)
    assert w.process.poll() is not None, "the worker kept running after a record was refused"
    assert "was refused" in w.log_tail(200_000) and "MessageSizeTooLarge" in w.log_tail(200_000)

    states = kafka.read_until(broker.bootstrap, topic_prefix + topics.CUSTOMER_POINT_STATE.name, lambda rs: False,
                              timeout=2)
    assert all(len(r.value) <= 65536 for r in states)  # nothing over the limit was written anywhere
    # and no input was committed past whose card the customer's published record lacks (the one worker folds the
    # customer's summaries itself, in the cards' batch: their input is the cards' input)
    webhooks = topic_prefix + topics.WEBHOOKS.name
    inputs = kafka.read_until(broker.bootstrap, webhooks, lambda rs: len(rs) >= len(mixed), timeout=30)
    committed = kafka.committed(broker.bootstrap, app_id, webhooks, 4)
    published = helpers.customer_records(states).get("cust_big_00000000", {}).get("vouchers", {})
    missing = [r for r in inputs if b"cust_big_00000000" in r.value
               and decode(r.value, r.headers, max_bytes=1 << 20).event.voucher_id not in published]
    assert missing and len(published) < 400
    assert all(committed[r.partition] is None or committed[r.partition] <= r.offset for r in missing), committed

    # Then, with the limit raised (as on the cluster), a restart reads the input again and processes it
    w2 = worker_factory("raised").wait_ready(timeout=120)

    def done(rs):
        latest = helpers.customer_records(rs)
        return (len(latest.get("cust_big_00000000", {}).get("vouchers", {})) == 400
                and sum(k.startswith("cust_other_") for k in latest) == 100)

    states = kafka.read_until(broker.bootstrap, topic_prefix + topics.CUSTOMER_POINT_STATE.name, done, timeout=180)
    latest = helpers.customer_records(states)
    assert len(latest["cust_big_00000000"]["vouchers"]) == 400, w2.log_tail()
    assert latest["cust_big_00000000"]["pending_points"] == sum(10 + i % 90 for i in range(400))
    assert sum(k.startswith("cust_other_") for k in latest) == 100


def test_topics_the_service_creates_carry_kafkas_record_limit(broker, worker_factory, topic_prefix):
    from aiokafka.admin import AIOKafkaAdminClient
    from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType
    import asyncio

    app_id = f"pp-{topic_prefix.rstrip('-')}"
    worker_factory().wait_ready()
    names = [topic_prefix + s.name for s in topics.ALL] + [f"{app_id}-{t}-changelog" for t in
                                                           ("cards", "entries", "customers")]

    async def configs():
        admin = AIOKafkaAdminClient(bootstrap_servers=broker.bootstrap)
        await admin.start()
        try:
            res = await admin.describe_configs([ConfigResource(ConfigResourceType.TOPIC, n) for n in names])
        finally:
            await admin.close()
        out = {}
        for r in res:
            for resource in r.to_object()["resources"]:
                if resource["error_code"] == 0:
                    out[resource["resource_name"]] = {e["config_names"]: e["config_value"]
                                                      for e in resource["config_entries"]}
        return out

    got = helpers.wait_until(lambda: (c := asyncio.run(configs())) and all(n in c for n in names) and c,
                             timeout=30, what="topic configs")
    wrong = {n: got[n] for n in names if got[n].get("max.message.bytes") != str(1024 * 1024 + 12)}
    assert not wrong, wrong


def test_a_delivery_whose_forwarded_copy_would_be_over_the_limit_is_dead_lettered_and_the_worker_goes_on(
    broker, worker_factory, topic_prefix
):
    import json

    from app.compat.internals import record_size

    limit = int(SMALL_LIMIT["KAFKA_MAX_RECORD_BYTES"])
    # Given a valid delivery under MAX_DELIVERY_BYTES, not keyed by its voucher id, whose record is just under the
    # 64 KiB limit (headers fill it): its copy, keyed by voucher id and with a forwarded-from header, would not be
    fat = simulate.fresh_added("fat", 0)
    mid = simulate.fresh_added("mid", 0)
    body = json.loads(fat.value)
    body["padding"] = "x" * (49_000 - len(fat.value))  # unknown fields are ignored
    value = json.dumps(body).encode()
    assert len(value) <= int(SMALL_LIMIT["MAX_DELIVERY_BYTES"])
    key = b"other"  # on neither's card's partition (of 4): both are forwarded
    assert helpers.card_partition(key) not in {helpers.card_partition(d.key) for d in (fat, mid)}
    pad = limit - 10 - record_size(key, value, [("x-pad", b"")])
    headers = [("x-pad", b"p" * pad)]
    assert limit - 20 < record_size(key, value, headers) <= limit
    # and one whose copy fits, but not with its carried event (about 600 bytes more)
    mid_headers = [("x-pad", b"p" * (limit - 300 - record_size(key, mid.value, [("x-pad", b"")])))]
    after = simulate.fresh_added("after", 0)
    w = worker_factory("small", **SMALL_LIMIT).wait_ready()
    kafka.produce(broker.bootstrap, topic_prefix + topics.WEBHOOKS.name,
                  [(key, value, headers), (key, mid.value, mid_headers), (None, after.value, after.headers)])

    # Then it is dead-lettered, saying why, and the next delivery is processed
    dlq = kafka.read_until(broker.bootstrap, topic_prefix + topics.DEAD_LETTERS.name, lambda rs: len(rs) >= 1,
                           timeout=60)
    reason = dict(dlq[0].headers)
    assert reason["dlq-code"] == b"copy_too_large" and b"KAFKA_MAX_RECORD_BYTES" in reason["dlq-reason"], reason
    states = kafka.read_until(broker.bootstrap, topic_prefix + topics.CUSTOMER_POINT_STATE.name,
                              lambda rs: all(any(r.key.startswith(c) for r in rs)
                                             for c in (b"cust_after_", b"cust_mid_")), timeout=60,
                              settle=2)  # a late record of the fat customer would show
    assert any(r.key.startswith(b"cust_after_") for r in states)
    assert not any(r.key.startswith(b"cust_fat_") for r in states)
    # and the other was forwarded without its event, and its copy validated again from its value
    assert any(r.key.startswith(b"cust_mid_") for r in states)
    assert helpers.metric_sum(helpers.scrape(w), "pending_points_forwarded_copies_decoded_total") == 1
