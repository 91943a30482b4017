"""What this worker can say about itself: liveness, readiness, lag, recovery progress, table sizes.

Read from Faust's consumer, recovery service and RocksDB stores on demand (views and the metrics scrape).
"""
from __future__ import annotations


import faust

from app.compat import internals
from app.main import app, cards_table, customers_table, entries_table, webhooks_topic, card_updates_topic


TABLES: tuple[faust.TableT, ...] = (cards_table, entries_table, customers_table)
SOURCE_TOPICS = (webhooks_topic, card_updates_topic)


def not_ready_reason() -> str | None:
    """Why this worker should not answer for its partitions yet (None: assigned, recovered, consuming)."""
    if app.rebalancing:
        return "rebalancing: partitions are being (re)assigned"
    if not app.tables.recovery.completed.is_set():
        remaining = app.tables.recovery.active_remaining_total()
        return f"recovering table state ({remaining} changelog records to go)"
    return None


def consumer_lag() -> list[tuple[list[str], float]]:
    """(topic, partition) -> records on the broker not yet read, for the assigned input partitions."""
    consumer = app.consumer
    names = {t.get_topic_name() for t in SOURCE_TOPICS}
    rows = []
    for tp in sorted(app.assignor.assigned_actives()):
        if tp.topic not in names:
            continue
        try:
            highwater = consumer.highwater(tp)
        except Exception:  # not fetched yet
            continue
        if highwater is None:
            continue
        position = internals.consumer_position(consumer, tp)
        rows.append(([tp.topic, str(tp.partition)], float(max(highwater - position, 0))))
    return rows


def dbs_by_role(table: faust.TableT):
    """(role, db) for each of this worker's RocksDB partitions of `table`: "active" or "standby"."""
    actives = app.assignor.assigned_actives()
    changelog = table.changelog_topic.get_topic_name()
    for partition, db in internals.partition_dbs(table).items():
        yield ("active" if faust.types.TP(changelog, partition) in actives else "standby"), db


def table_keys() -> list[tuple[list[str], float]]:
    """Estimated keys per table in this worker's RocksDB, split into active and standby partitions."""
    rows = []
    for table in TABLES:
        counts = {"active": 0, "standby": 0}
        for role, db in dbs_by_role(table):
            try:
                counts[role] += db.property_int_value("rocksdb.estimate-num-keys") or 0
            except Exception:  # closed during a rebalance
                pass
        rows += [([table.name, role], float(n)) for role, n in counts.items()]
    return rows


def state_gauges() -> dict:
    recovery = app.tables.recovery
    return {
        "ready": ("1 when this worker's partitions are assigned and recovered", [],
                  [([], 0.0 if not_ready_reason() else 1.0)]),
        "consumer_lag": ("Records on the broker not yet read, per assigned input partition",
                         ["topic", "partition"], consumer_lag()),
        "recovery_remaining_records": (
            "Changelog records still to restore, active and standby partitions", ["role"],
            [(["active"], float(recovery.active_remaining_total())),
             (["standby"], float(recovery.standby_remaining_total()))]),
        "recovery_in_progress": ("1 while active table partitions are being restored", [],
                                 [([], 1.0 if recovery.in_recovery else 0.0)]),
        "table_keys": ("Estimated keys in this worker's RocksDB, by table and partition role",
                       ["table", "role"], table_keys()),
    }
