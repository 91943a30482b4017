"""Keep the producer's metadata for the tables' changelog topics, which Faust's table_route hashes keys with.

aiokafka only refreshes metadata for topics in its client's topic set, and a topic whose partitions were already
known from an earlier full refresh never joins that set. A later refresh then forgets it, and
`app.producer.key_partition` fails inside Faust's router with "'NoneType' object is not iterable" (seen on the
embedded broker: GET /vouchers/... answered 500 while GET /customers/... worked).
"""
from __future__ import annotations

import logging

from app.main import app, cards_table, customers_table

logger = logging.getLogger(__name__)


@app.task
async def pin_changelog_metadata() -> None:
    client = app.producer._ensure_producer().client  # the aiokafka client behind Faust's producer
    for table in (cards_table, customers_table):
        topic = table.changelog_topic.get_topic_name()
        client.add_topic(topic)
        await client._wait_on_metadata(topic)
        logger.debug("pinned metadata for %s", topic)
