"""The topic registry: every topic the service reads or writes, declared once. Importing has no side effects.

Partition counts are not here: all topics the service creates take `Settings.partitions`, which keeps the
voucher-keyed and customer-keyed topics co-partitioned with the tables fed from them.
"""
from __future__ import annotations

from dataclasses import dataclass

from app.models import records
from app.models.webhooks import EVENT_TYPE_HEADER  # noqa: F401  (re-exported: part of the input contract)


@dataclass(frozen=True, slots=True)
class TopicSpec:
    name: str
    key: str  # what the record key is (raw UTF-8 bytes)
    value: type | None  # model of the JSON value; None = raw bytes from outside
    compacted: bool = False
    internal: bool = False  # only this service reads it
    doc: str = ""


WEBHOOKS = TopicSpec(
    "voucherify-webhooks",
    key="any (the voucher id when we produce it)",
    value=None,
    doc="Voucherify webhook deliveries, as sent: v2024-01-01 envelope or raw data object (+ `event-type` header).",
)
DEAD_LETTERS = TopicSpec(
    "voucherify-webhooks-dlq",
    key="the original key",
    value=None,
    doc="Deliveries that could not be processed: original bytes and headers plus `dlq-*` headers.",
)
# Before cards read the input topic directly: validated deliveries re-keyed by voucher. No longer written or
# read; a worker refuses to start while it holds unread records and deletes it once drained (app/startup/preflight.py,
# docs/operations.md "Upgrading").
LEGACY_EVENTS = "pending-points-events"
CARD_UPDATES = TopicSpec(
    "pending-points-card-updates",
    key="customer id",
    value=records.CardSummary,
    internal=True,
    doc="Card totals re-keyed from voucher to owner customer (a customer can hold several cards).",
)
CUSTOMER_POINT_STATE = TopicSpec(
    "customer-point-state",
    key="customer id",
    value=records.CustomerPointState,
    compacted=True,
    doc="Per-customer point state, one record per change.",
)
ACTIVATIONS = TopicSpec(
    "pending-points-activations",
    key="pending points id (lopp_…)",
    value=records.PendingPointsActivation,
    compacted=True,
    doc="Join of each entry's added and activated events, for time-to-activation analytics.",
)

ENTRIES = TopicSpec(
    "pending-points-entries",
    key="pending points id (lopp_…)",
    value=records.PendingPointsEntry,
    compacted=True,
    doc="Each pending entry's current state (PENDING, ACTIVATED or CANCELED), one record per change.",
)

REDRIVEN = TopicSpec(
    "voucherify-webhooks-redriven",
    key="dead letter coordinates (`<dlq topic>/<partition>/<offset>`)",
    value=None,
    compacted=True,
    internal=True,
    doc="The ledger of `python -m app redrive`: one record per dead letter put back on the input, so a second run "
        "skips it. Value: JSON with where it went and when.",
)

ALL: tuple[TopicSpec, ...] = (
    WEBHOOKS, DEAD_LETTERS, CARD_UPDATES, CUSTOMER_POINT_STATE, ACTIVATIONS, ENTRIES, REDRIVEN,
)

# Dead-letter record headers (the original headers are kept as well).
DLQ_REASON = "dlq-reason"  # "<code>: <detail>"
DLQ_CODE = "dlq-code"
DLQ_SOURCE_TOPIC = "dlq-source-topic"
DLQ_SOURCE_PARTITION = "dlq-source-partition"
DLQ_SOURCE_OFFSET = "dlq-source-offset"
DLQ_TRUNCATED = "dlq-truncated"  # the original value's length, when the copy had to be cut to fit the record limit
SOURCE = "source"  # on the input topic: `backfill` for records written by `python -m app backfill`
REDRIVEN_FROM = "redriven-from"  # on the input topic: `<dlq topic>/<partition>/<offset>`, by `python -m app redrive`
# On the input topic: `<topic>/<partition>/<offset>` of a delivery that was not on its card's partition (the one
# its voucher id is keyed to), written again keyed by it by the cards stage.
FORWARDED_FROM = "forwarded-from"
# On such a copy: the event its value decodes to (NormalizedEvent JSON), read instead of decoding the value again.
FORWARDED_EVENT = "forwarded-event"
