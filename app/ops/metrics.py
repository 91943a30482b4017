"""This worker's Prometheus metrics: one registry, every series declared here.

Counters and histograms are updated by the agents and the webhook view; lag, recovery progress and table sizes
are read from Faust when scraped (`register_state`), so they cost nothing between scrapes.
"""
from __future__ import annotations

import functools
import time
from collections import Counter
from typing import Callable, Iterable

from prometheus_client import CollectorRegistry, Counter as PromCounter, Histogram
from prometheus_client.core import GaugeMetricFamily, Metric

REGISTRY = CollectorRegistry(auto_describe=True)
PREFIX = "pending_points_"

# Outcome of each delivery read from the input topic. event_type: the lifecycle step, "other" for a skipped
# foreign type (not the sender's string: labels must stay few), "unknown" when a dead letter had no usable type.
DELIVERIES = PromCounter(
    PREFIX + "deliveries", "Deliveries read from the input topic, by event type and outcome",
    ["event_type", "outcome"], registry=REGISTRY,
)
# A valid delivery not on its card's partition (the one its voucher id is keyed to) is written again keyed by it, and
# counted in DELIVERIES when that copy is folded.
FORWARDED = PromCounter(
    PREFIX + "forwarded", "Valid deliveries written again to the input topic keyed by their voucher id, by event type",
    ["event_type"], registry=REGISTRY,
)
COPIES_DECODED = PromCounter(
    PREFIX + "forwarded_copies_decoded", "Forwarded copies validated again from their value: no usable carried event "
    "(too large with it, another decoder version, or not what decoding gives)", registry=REGISTRY,
)
DEAD_LETTERS = PromCounter(
    PREFIX + "dead_letters", "Records written to the dead-letter topic, by reason code", ["code"], registry=REGISTRY,
)
WEBHOOK_REQUESTS = PromCounter(
    PREFIX + "webhook_requests", "POST /webhooks/voucherify answers, by HTTP status and outcome",
    ["status", "outcome"], registry=REGISTRY,
)
WEBHOOK_ACK_SECONDS = Histogram(
    PREFIX + "webhook_ack_seconds", "Time from a webhook POST being read to the broker acknowledging it",
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10), registry=REGISTRY,
)
# Internal records carry the input record's timestamp, so every stage measures from when the delivery was written
# to the input topic; stage="customers" is the end-to-end latency to the customer-point-state update.
PROCESSING_SECONDS = Histogram(
    PREFIX + "processing_latency_seconds",
    "Time from a delivery being written to the input topic to this stage finishing it",
    ["stage"], buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300),
    registry=REGISTRY,
)
BATCH_RECORDS = Histogram(
    PREFIX + "batch_records",
    "Records per batch an agent took from its input (STREAM_BATCH_MAX caps it)",
    ["stage"], buckets=(1, 2, 5, 10, 25, 50, 100, 250, 500, 1000, 5000),
    registry=REGISTRY,
)
CHANGES = PromCounter(
    PREFIX + "state_writes", "Table writes by table and kind (changed, replay, unchanged; "
    "entries/retired_changed: a retired entry changed, its totals frozen)",
    ["table", "kind"], registry=REGISTRY,
)

# Skipped foreign types by name, for GET /stats only (unbounded names stay out of Prometheus labels).
_skipped_types: Counter[str] = Counter()


@functools.lru_cache(maxsize=None)  # label values are few (steps, stages, outcomes); .labels() costs a lock
def _child(metric, *labels: str):
    return metric.labels(*labels)


def delivery(event_type: str, outcome: str) -> None:
    _child(DELIVERIES, event_type, outcome).inc()


def forwarded(event_type: str) -> None:
    _child(FORWARDED, event_type).inc()


def copy_decoded() -> None:
    COPIES_DECODED.inc()


def stage_done(stage: str, timestamps: Iterable[float]) -> None:
    """A stage finished these records: time from each delivery being written to the input topic until now."""
    child, now = _child(PROCESSING_SECONDS, stage), time.time()
    for ts in timestamps:
        child.observe(max(now - ts, 0.0))


def webhook_request(status: str, outcome: str) -> None:
    _child(WEBHOOK_REQUESTS, status, outcome).inc()


def change(table: str, kind: str) -> None:
    _child(CHANGES, table, kind).inc()


def batch(stage: str, records: int) -> None:
    _child(BATCH_RECORDS, stage).observe(records)


def skipped(event_type: str) -> None:
    _skipped_types[event_type] += 1
    _child(DELIVERIES, "other", "skipped").inc()


def dead_lettered(code: str, event_type: str | None) -> None:
    _child(DEAD_LETTERS, code).inc()
    if event_type is not None:  # None: an internal record, already counted when it was a delivery
        _child(DELIVERIES, event_type or "unknown", "dead_lettered").inc()


def _samples(counter: PromCounter) -> Iterable[tuple[dict, float]]:
    for metric in counter.collect():
        for sample in metric.samples:
            if sample.name.endswith("_total"):
                yield sample.labels, sample.value


def snapshot() -> dict:
    """Counters as JSON for GET /stats."""
    out: dict[str, dict[str, int]] = {"processed": {}, "skipped": dict(sorted(_skipped_types.items())),
                                      "dead_lettered": {}, "webhook": {}}
    for labels, value in _samples(DELIVERIES):
        if labels["outcome"] == "processed":
            out["processed"][labels["event_type"]] = int(value)
    for labels, value in _samples(DEAD_LETTERS):
        out["dead_lettered"][labels["code"]] = int(value)
    for labels, value in _samples(WEBHOOK_REQUESTS):
        out["webhook"][f'{labels["status"]} {labels["outcome"]}'] = int(value)
    return out


class StateCollector:
    """Gauges read at scrape time from a callable returning {name: (help, labelnames, [(labels, value)])}."""

    def __init__(self, read: Callable[[], dict[str, tuple[str, list[str], list[tuple[list[str], float]]]]]):
        self._read = read

    def collect(self) -> Iterable[Metric]:
        for name, (doc, labelnames, rows) in self._read().items():
            family = GaugeMetricFamily(PREFIX + name, doc, labels=labelnames)
            for labels, value in rows:
                family.add_metric(labels, value)
            yield family

    def describe(self) -> Iterable[Metric]:
        return []


def register_state(read) -> None:
    REGISTRY.register(StateCollector(read))
