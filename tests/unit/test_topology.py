"""The declared topology: co-partitioned tables, raw keys (so view routing finds the owner), one name per topic."""
from __future__ import annotations

import topics
from app import main


def test_tables__take_their_partition_count_from_the_topic_that_feeds_them():
    # cards read the input topic: a card's deliveries sit on the partition of its aggregate and entry rows
    assert main.cards_table.partitions == main.webhooks_topic.partitions == main.settings.partitions
    # entries rows live on their card's partition (agents/tables.py writes them by the card's event)
    assert main.entries_table.partitions == main.webhooks_topic.partitions
    assert main.customers_table.partitions == main.card_updates_topic.partitions == main.settings.partitions


def test_tables__keys_are_raw_bytes_like_the_kafka_and_url_keys():
    # JSON-encoded table keys hash to other partitions than the data: routed views then miss half the keys.
    for table in (main.cards_table, main.entries_table, main.customers_table):
        assert table.key_serializer == "raw"
        assert table.changelog_topic.key_serializer == "raw"


def test_topics__every_registry_entry_is_declared_once_with_its_cleanup_policy():
    names = [spec.name for spec in topics.ALL]
    assert len(names) == len(set(names))
    declared = {t.get_topic_name(): t for t in (
        main.webhooks_topic, main.dead_letter_topic, main.card_updates_topic,
        main.customer_state_topic, main.activations_topic, main.entries_topic, main.redriven_topic)}
    assert set(declared) == {main.settings.topic_name(n) for n in names}
    for spec in topics.ALL:
        config = declared[main.settings.topic_name(spec.name)].config or {}
        assert (config.get("cleanup.policy") == "compact") == spec.compacted
