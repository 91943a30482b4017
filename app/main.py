"""Create the faust.App from settings and declare its topology: topics (from the registry) and tables."""
from __future__ import annotations

from zoneinfo import ZoneInfo

import faust

import topics
from app.compat import end_offsets, fast_drain, fetch_wait, no_lost_input
from app.ops import logs
from app.ops.monitor import QuietMonitor
from app.partitioner import CachedPartitioner
from app.settings import Settings, get_settings



def create_app(settings: Settings) -> faust.App:
    if settings.kafka_verify_end_offsets:
        end_offsets.install(settings.kafka_client_kwargs)
    source_topics = {settings.topic_name(t.name) for t in (topics.WEBHOOKS, topics.CARD_UPDATES)}
    no_lost_input.install(source_topics.__contains__)
    fetch_wait.install(settings.kafka_fetch_max_wait_ms)
    app = faust.App(
        settings.app_id,
        broker=[f"kafka://{server}" for server in settings.bootstrap_servers],
        broker_credentials=settings.faust_credentials(),
        store="rocksdb://",
        datadir=str(settings.data_dir),
        key_serializer="raw",
        value_serializer="raw",
        processing_guarantee="at_least_once",  # the embedded broker has no transactions
        topic_partitions=settings.partitions,
        topic_replication_factor=settings.replication_factor,
        topic_allow_declare=True,
        web_host=settings.web_host,
        web_port=settings.web_port,
        web_canonical_url=settings.advertised_url,
        broker_session_timeout=settings.session_timeout_s,
        broker_heartbeat_interval=settings.heartbeat_interval_s,
        broker_rebalance_timeout=settings.rebalance_timeout_s,
        broker_commit_interval=settings.commit_interval_s,
        table_standby_replicas=settings.table_standby_replicas,
        producer_linger=settings.kafka_producer_linger_ms / 1000.0,
        producer_partitioner=CachedPartitioner(),  # Kafka's default partitioner, without hashing a key twice
        # Kafka's limit, enforced here too: the embedded broker would take any size (see KAFKA_MAX_RECORD_BYTES).
        producer_max_request_size=settings.kafka_max_record_bytes,
        consumer_auto_offset_reset="earliest",
        logging_config=logs.logging_config(settings.log_format, settings.log_level),
        Monitor=QuietMonitor,
    )
    if settings.fast_drain:
        fast_drain.install(app.consumer)
    return app


class RawBytes(faust.Schema):
    """Keys and values as the bytes on the wire. Faust's `raw` serializer gives the same bytes after a trip
    through its codec registry for every record (about 2% of the worker); this hands them over as they are."""

    def __init__(self) -> None:
        super().__init__(key_type=bytes, value_type=bytes, key_serializer="raw", value_serializer="raw")

    def loads_key(self, app, message, *, loads=None, serializer=None):
        return message.key

    def loads_value(self, app, message, *, loads=None, serializer=None):
        return message.value


def _topic(app: faust.App, settings: Settings, spec: topics.TopicSpec) -> faust.TopicT:
    # Every topic is declared (created if absent) so it gets our partition count and cleanup policy,
    # instead of whatever the broker's auto-creation would pick.
    return app.topic(
        settings.topic_name(spec.name),
        schema=RawBytes(),
        partitions=settings.partitions,
        internal=True,
        allow_empty=True,
        config=settings.topic_config(spec.compacted),
    )


settings = get_settings()
app = create_app(settings)
project_tz = ZoneInfo(settings.project_timezone)
_PARTITIONS = range(settings.partitions)


def partition_of(key: bytes) -> int:
    """The partition the producer's partitioner (Kafka's default) gives `key` on a topic of PARTITIONS partitions:
    a voucher id's on the input topic (its card's), a customer id's on pending-points-card-updates (its
    customer's); the preflight checks that both topics have PARTITIONS."""
    return app.conf.producer_partitioner(key, _PARTITIONS, _PARTITIONS)


webhooks_topic = _topic(app, settings, topics.WEBHOOKS)
dead_letter_topic = _topic(app, settings, topics.DEAD_LETTERS)
card_updates_topic = _topic(app, settings, topics.CARD_UPDATES)
customer_state_topic = _topic(app, settings, topics.CUSTOMER_POINT_STATE)
activations_topic = _topic(app, settings, topics.ACTIVATIONS)
entries_topic = _topic(app, settings, topics.ENTRIES)
redriven_topic = _topic(app, settings, topics.REDRIVEN)  # written by `python -m app redrive`, declared with the rest

# Tables hold model JSON under raw UTF-8 keys. The Kafka key, the table's changelog key and the URL key must be
# the same bytes: Faust's table_route hashes the table's serialized key to find the owner, while the data
# sits in the partition of the record that wrote it. A Table picks its key serializer from key_type alone
# (bytes -> raw, anything else -> json); with str keys the changelog held '"cust_1"' and about half of all view
# requests went to a worker that did not hold the key. So keys are bytes: ids encoded as UTF-8.
# Every table lives on the input's partitions or card updates' (a write goes to the current event's partition).
# cards: voucher id (bytes) -> CardAgg JSON (logic/cards.py), co-partitioned with webhooks_topic.
cards_table = app.Table("cards", key_type=bytes, value_type=bytes, partitions=settings.partitions,
                        options=settings.rocksdb_options(), extra_topic_configs=settings.topic_config(True))
# entries: voucher id NUL entry id -> EntryRecord JSON, and index keys (logic/cards.py); on the card's partition.
entries_table = app.Table("entries", key_type=bytes, value_type=bytes, partitions=settings.partitions,
                          options=settings.rocksdb_options(), extra_topic_configs=settings.topic_config(True))
# customers: customer id (bytes) -> CustomerState JSON, co-partitioned with card_updates_topic.
customers_table = app.Table("customers", key_type=bytes, value_type=bytes, partitions=settings.partitions,
                            options=settings.rocksdb_options(), extra_topic_configs=settings.topic_config(True))
