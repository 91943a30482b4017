"""How long a fetch may wait on the broker for data (Faust hard-codes 1,500 ms for its worker consumer).

Apache Kafka answers a waiting fetch as soon as data arrives, so the wait only bounds idle polling there. The
embedded broker (Tansu 0.6) polls a waiting fetch, sleeping half the remaining wait between passes
(`FetchService::fetch`), so a record that arrives meanwhile waits for the next pass: measured with a bare aiokafka
consumer, produce -> consume took 716 ms at 1,500 ms, 215 ms at 500, 15 ms at 100 and 4 ms at 20.
Our pipeline has three consuming stages in a row, so with Faust's value every delivery waited seconds.
"""
from __future__ import annotations

from app.compat import patch


def install(fetch_max_wait_ms: int) -> None:
    from faust.transport.drivers import aiokafka as driver

    def make(original):
        def _create_worker_consumer(self, transport):
            consumer = original(self, transport)
            consumer._fetch_max_wait_ms = fetch_max_wait_ms  # read when the consumer starts its fetcher
            return consumer
        return _create_worker_consumer

    patch(driver.AIOKafkaConsumerThread, "_create_worker_consumer", make,
          f"worker consumer's fetch wait {fetch_max_wait_ms} ms")
